"""Backend selection shared by every op in :mod:`mmdynconv.ops`.

Each op takes ``backend=None | 'reference' | 'triton'``:

- ``'reference'``: the pure-PyTorch implementation (any device, any floating dtype);
- ``'triton'``: the fused Triton kernels. CUDA tensors, or CPU tensors when ``TRITON_INTERPRET=1`` is set before the
  first Triton launch (Triton's interpreter: slow, meant for tests);
- ``None`` (automatic): the environment variable ``MMDYNCONV_BACKEND`` (``'reference'``, ``'triton'`` or
  ``'auto'``) if set, otherwise Triton for CUDA tensors when ``triton`` is importable and the reference for
  everything else.

An explicit ``backend`` argument wins over ``MMDYNCONV_BACKEND``; the variable forces a backend wherever the caller
leaves the choice open (layers, configs, whole models).
"""
import contextlib
import os

import torch

try:
    import triton  # noqa: F401
    _TRITON_IMPORT_ERROR = None
except ImportError as err:  # triton is optional: the reference backend needs torch only
    _TRITON_IMPORT_ERROR = err

ENV_VAR = 'MMDYNCONV_BACKEND'
BACKENDS = ('reference', 'triton')


def triton_available() -> bool:
    """Whether ``import triton`` succeeded."""
    return _TRITON_IMPORT_ERROR is None


def triton_interpreter_enabled() -> bool:
    """Whether ``TRITON_INTERPRET`` asks Triton to interpret kernels on the CPU."""
    return os.environ.get('TRITON_INTERPRET', '0').strip().lower() in ('1', 'true', 'yes', 'on', 'y')


def resolve_backend(backend, device: torch.device, op: str) -> str:
    """Return ``'reference'`` or ``'triton'`` for an op called as ``op`` on tensors living on ``device``.

    Raises ``TypeError``/``ValueError`` for a bad ``backend`` or ``MMDYNCONV_BACKEND`` value, and ``RuntimeError``
    when Triton is requested but cannot run on ``device``.
    """
    if backend is None:
        env = os.environ.get(ENV_VAR, '').strip().lower()
        if env in ('', 'auto'):
            use_triton = device.type == 'cuda' and triton_available()
            return 'triton' if use_triton else 'reference'
        if env not in BACKENDS:
            raise ValueError(f"{op}: environment variable {ENV_VAR} must be 'auto', 'reference' or 'triton', "
                             f'got {env!r}')
        backend = env
    elif not isinstance(backend, str):
        raise TypeError(f"{op}: backend must be None, 'reference' or 'triton', got {type(backend).__name__}")
    elif backend not in BACKENDS:
        raise ValueError(f"{op}: backend must be None, 'reference' or 'triton', got {backend!r}")
    if backend == 'triton':
        check_triton_device(device, op)
    return backend


def check_triton_device(device: torch.device, op: str) -> None:
    """Raise ``RuntimeError`` unless Triton kernels can run on ``device``."""
    if not triton_available():
        raise RuntimeError(f"{op}: backend='triton' needs the triton package, which failed to import "
                           f"({_TRITON_IMPORT_ERROR}); use backend='reference'")
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
