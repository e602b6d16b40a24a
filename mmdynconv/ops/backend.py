"""Backend selection shared by every op in :mod:`mmdynconv.ops`.

Each op takes ``backend=None | 'reference' | 'triton'`` and passes it to :func:`resolve_backend` with the backends it
implements (its ``OP_BACKENDS``):

- ``'reference'``: the pure-PyTorch implementation (any device, any floating dtype);
- ``'triton'``: the fused Triton kernels. CUDA tensors, or CPU tensors when ``TRITON_INTERPRET=1`` is set before the
  first Triton launch (Triton's interpreter: slow, meant for tests);
- ``None`` (automatic): the environment variable ``MMDYNCONV_BACKEND`` (``'reference'``, ``'triton'`` or
  ``'auto'``) if set, otherwise Triton for CUDA tensors when a supported ``triton`` (>= :data:`TRITON_MIN`) is
  importable and the reference for everything else. An older Triton (torch < 2.4 ships Triton 2.x) is refused: the
  automatic choice is then the reference, said once in the log, and ``backend='triton'`` raises.

An explicit ``backend`` argument wins over ``MMDYNCONV_BACKEND``; the variable forces a backend wherever the caller
leaves the choice open (layers, configs, whole models). An op without Triton kernels (``OP_BACKENDS ==
('reference',)``) runs its reference under ``None`` whatever the variable says, and raises ``ValueError`` for an
explicit ``backend='triton'``.
"""
import contextlib
import logging
import os
import re

import torch

try:
    import triton
    _TRITON_IMPORT_ERROR = None
    TRITON_VERSION = triton.__version__
except ImportError as err:  # triton is optional: the reference backend needs torch only
    _TRITON_IMPORT_ERROR = err
    TRITON_VERSION = None

ENV_VAR = 'MMDYNCONV_BACKEND'
BACKENDS = ('reference', 'triton')
TRITON_MIN = (3, 0)  # oldest Triton the kernels are compiled and interpreter-tested with (docs/install.md)
TRITON_UPGRADE = 'install torch >= 2.4 with the triton it ships (pip install "torch>=2.4"), or triton >= 3.0'
_logger = logging.getLogger('mmdynconv')
_told_reference = set()

__all__ = ['ENV_VAR', 'BACKENDS', 'TRITON_MIN', 'TRITON_VERSION', 'triton_available', 'triton_unusable_reason',
           'triton_interpreter_enabled', 'resolve_backend', 'auto_backend', 'explain_backend', 'check_triton_device',
           'device_guard']


def _version_tuple(version):
    return tuple(int(p) for p in re.findall(r'\d+', version)[:2])


def triton_available() -> bool:
    """Whether ``import triton`` succeeded and its version is supported (>= :data:`TRITON_MIN`)."""
    return triton_unusable_reason() is None


def triton_unusable_reason():
    """None when the Triton kernels can be used here, else why not (a sentence naming the version)."""
    if _TRITON_IMPORT_ERROR is not None:
        return f'the triton package failed to import ({_TRITON_IMPORT_ERROR})'
    if _version_tuple(TRITON_VERSION) < TRITON_MIN:
        minimum = '.'.join(map(str, TRITON_MIN))
        return f"triton {TRITON_VERSION} is older than the kernels' minimum {minimum}; {TRITON_UPGRADE}"
    return None


def triton_interpreter_enabled() -> bool:
    """Whether ``TRITON_INTERPRET`` asks Triton to interpret kernels on the CPU."""
    return os.environ.get('TRITON_INTERPRET', '0').strip().lower() in ('1', 'true', 'yes', 'on', 'y')


def resolve_backend(backend, device: torch.device, op: str, backends=BACKENDS) -> str:
    """Return ``'reference'`` or ``'triton'`` for an op called as ``op`` on tensors living on ``device``.

    ``backends``: the backends the op implements, ``'reference'`` always among them (:data:`BACKENDS` for an op with
    Triton kernels, ``('reference',)`` for one without). Raises ``TypeError``/``ValueError`` for a bad ``backend``
    or ``MMDYNCONV_BACKEND`` value (``backend='triton'`` for an op without Triton kernels included), and
    ``RuntimeError`` when Triton is requested but cannot run on ``device``.
    """
    allowed = ', '.join(['None'] + [repr(b) for b in backends[:-1]]) + f' or {backends[-1]!r}'
    if backend is None:
        env = os.environ.get(ENV_VAR, '').strip().lower()
        if env in ('', 'auto'):
            return auto_backend(device, op) if 'triton' in backends else 'reference'
        if env not in BACKENDS:
            raise ValueError(f"{op}: environment variable {ENV_VAR} must be 'auto', 'reference' or 'triton', "
                             f'got {env!r}')
        if env not in backends:  # the variable forces a backend where the op has it
            return 'reference'
        backend = env
    elif not isinstance(backend, str):
        raise TypeError(f'{op}: backend must be {allowed}, got {type(backend).__name__}')
    elif backend not in backends:
        missing = f' ({op} has no Triton kernel)' if backend == 'triton' else ''
        raise ValueError(f'{op}: backend must be {allowed}{missing}, got {backend!r}')
    if backend == 'triton':
        check_triton_device(device, op)
    return backend


def auto_backend(device: torch.device, op: str) -> str:
    """The automatic choice: Triton for CUDA tensors when it is usable, else the reference (a CUDA caller whose
    Triton is refused is told once per op, in the ``mmdynconv`` logger)."""
    if device.type != 'cuda':
        return 'reference'
    reason = triton_unusable_reason()
    if reason is None:
        return 'triton'
    if op not in _told_reference:
        _told_reference.add(op)
        _logger.warning('%s: using the reference backend on CUDA: %s', op, reason)
    return 'reference'


def explain_backend(device_type: str) -> tuple:
    """(backend, why) the automatic choice makes for tensors on ``device_type`` ('cuda' or 'cpu'), honouring
    ``MMDYNCONV_BACKEND``; for :mod:`mmdynconv.utils.collect_env`."""
    env = os.environ.get(ENV_VAR, '').strip().lower()
    if env not in ('', 'auto'):
        return env, f'forced by {ENV_VAR}={env}'
    if device_type != 'cuda':
        return 'reference', 'Triton kernels run on CUDA tensors only (TRITON_INTERPRET=1 is for tests)'
    reason = triton_unusable_reason()
    if reason is None:
        return 'triton', f'triton {TRITON_VERSION} on CUDA'
    return 'reference', reason


def check_triton_device(device: torch.device, op: str) -> None:
    """Raise ``RuntimeError`` unless Triton kernels can run on ``device``."""
    reason = triton_unusable_reason()
    if reason is not None:
        raise RuntimeError(f"{op}: backend='triton' cannot be used: {reason}; or use backend='reference'")
    if device.type == 'cuda':
        return
    if device.type == 'cpu':
        if triton_interpreter_enabled():
            return
        raise RuntimeError(f"{op}: backend='triton' got CPU tensors; Triton runs on CPU only through its "
                           "interpreter: set TRITON_INTERPRET=1 before the first Triton launch (slow, for tests), "
                           "or use backend='reference'")
    raise RuntimeError(f"{op}: backend='triton' supports CUDA tensors (and CPU tensors with TRITON_INTERPRET=1), "
                       f"got device {device}; use backend='reference'")


def device_guard(t: torch.Tensor):
    """Context making ``t``'s CUDA device current (Triton launches on the current device), a no-op elsewhere."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()
