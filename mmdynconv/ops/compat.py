"""Every torch API newer than the supported floor (torch 2.1) goes through this module.

- :func:`register_op`: how every mmdynconv op registers itself: ``torch.library.custom_op`` (torch ≥ 2.4) when it
  exists, so ops are real custom ops that ``torch.compile(fullgraph=True)``, ``torch.library.opcheck`` and
  ``torch.export`` see whole, with its fake implementation and autograd formula. On older torch the same op becomes a
  plain ``torch.autograd.Function``: eager, autocast and DDP work identically; compile, opcheck and export then need
  torch ≥ 2.4 (:data:`HAS_CUSTOM_OP`). :func:`reject_double_backward` is the autograd formula of the backward ops.
  :func:`custom_op` is the decorator underneath, for the few custom ops outside the op modules.
- :func:`is_compiling` / :func:`fake_mode_active`: whether a ``torch.compile`` / ``torch.export`` trace is running.
- :func:`autocast_dtype`: the autocast dtype of a device type, or None (``torch.get_autocast_dtype(device)`` from
  torch 2.4, the per-device functions before).
- :func:`event_start_ns`: a profiler event's start in ns (``start_ns`` from torch 2.2, ``start_us`` before).
- :func:`add_safe_globals`: allow-list globals for ``torch.load(weights_only=True)`` (torch ≥ 2.4; older torch loads
  with ``weights_only=False`` by default, so nothing is needed there).

Depends on torch only.
"""
import functools

import torch

TORCH_VERSION = tuple(int(p) for p in torch.__version__.split('+')[0].split('.')[:2])
MIN_TORCH = (2, 1)
HAS_CUSTOM_OP = hasattr(torch.library, 'custom_op') and hasattr(torch.library, 'register_fake')
CUSTOM_OP_REASON = ('' if HAS_CUSTOM_OP else
                    f'torch {torch.__version__} has no torch.library.custom_op (torch >= 2.4): mmdynconv ops run as '
                    'plain autograd Functions, so torch.compile(fullgraph=True), torch.library.opcheck and '
                    'torch.export need torch >= 2.4')
NAMESPACE = 'mmdynconv'  # of every op's custom ops: mmdynconv::<op> and mmdynconv::<op>_backward

__all__ = ['TORCH_VERSION', 'MIN_TORCH', 'HAS_CUSTOM_OP', 'CUSTOM_OP_REASON', 'NAMESPACE', 'register_op',
           'reject_double_backward', 'custom_op', 'compile_disabled', 'is_compiling',
           'fake_mode_active', 'add_safe_globals', 'autocast_dtype', 'event_start_ns']


def compile_disabled(fn):
    """``torch.compiler.disable(fn)``, applied at the first call rather than at import: it imports ``torch._dynamo``,
    which costs time at ``import mmdynconv`` and fails where an unusable Triton is installed."""
    disabled = []

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if not disabled:
            disabled.append(torch.compiler.disable(fn))
        return disabled[0](*args, **kwargs)
    return call


class _FunctionOp:
    """``torch.library.custom_op``'s interface on torch < 2.4: calls run ``fn``; ``register_autograd`` wraps it in an
    ``autograd.Function`` with the same ``setup_context`` / ``backward`` contract (one gradient per input)."""

    def __init__(self, name, fn):
        self.name = name
        self._fn = fn
        self._function = None
        self.__doc__ = fn.__doc__

    def register_fake(self, fake):
        """Kept for the newer-torch path; shape propagation is not needed without custom-op tracing."""
        return fake

    def register_autograd(self, backward, setup_context):
        fn = self._fn
        self._function = type(self.name.replace('::', '_'), (torch.autograd.Function,), {
            # a list output (``-> List[Tensor]``) would be one opaque object to autograd: return a tuple
            'forward': staticmethod(lambda *args: _tuple_if_list(fn(*args))),
            'setup_context': staticmethod(setup_context),
            'backward': staticmethod(backward),
        })

    def __call__(self, *args):
        if self._function is None:
            return self._fn(*args)
        return self._function.apply(*args)


def _tuple_if_list(output):
    return tuple(output) if isinstance(output, list) else output


def custom_op(name, mutates_args=()):
    """``@custom_op('mmdynconv::name')``: a ``torch.library.custom_op`` where torch has it, else an
    autograd-Function-backed op with the same ``register_fake`` / ``register_autograd`` methods."""
    def wrap(fn):
        if HAS_CUSTOM_OP:
            return torch.library.custom_op(name, mutates_args=mutates_args)(fn)
        return _FunctionOp(name, fn)
    return wrap


EXPORT_FORMS = {}
"""{'namespace::op': its export form}: the out-of-place formulation in standard ops, with the op's arguments, that
``torch.export`` decomposes the op into (:func:`mmdynconv.deploy.export.decomposition_table`)."""


def register_op(name, forward, fake, backward, setup_context=None, export_form=None):
    """The custom op ``name`` ('namespace::op') running ``forward``, registered in one step on every torch.

    Args:
        forward: the implementation, its arguments type-annotated (``torch.library.custom_op`` reads the schema
            from them); mutates none of its inputs.
        fake: same arguments, returns empty outputs of the right shapes, dtypes and strides (compile, export).
        backward: ``backward(ctx, *output_grads)``, one gradient (or None) per argument of ``forward``.
        setup_context: ``setup_context(ctx, inputs, output)`` saving what ``backward`` needs; None saves nothing.
        export_form: the op in standard, out-of-place ops with ``forward``'s arguments (recorded in
            :data:`EXPORT_FORMS`; ONNX export replaces the op by it); None: the op does not export.

    Returns:
        The callable op: a ``torch.library`` custom op (``torch.ops.<namespace>.<op>``) on torch >= 2.4, an
        ``autograd.Function``-backed stand-in with the same behaviour in eager mode before.
    """
    op = custom_op(name)(forward)
    op.register_fake(fake)
    op.register_autograd(backward, setup_context=setup_context or _save_nothing)
    if export_form is not None:
        EXPORT_FORMS[name] = export_form
    return op


def reject_double_backward(owner):
    """The ``backward`` of a backward op: differentiating ``owner``'s gradient raises NotImplementedError."""
    def backward(ctx, *grads):
        raise NotImplementedError(f'{owner}: double backward (differentiating its gradient) is not supported')
    return backward


def _save_nothing(ctx, inputs, output):
    pass


def is_compiling() -> bool:
    """Whether Dynamo is tracing (``torch.compiler.is_compiling`` from torch 2.3, ``torch._dynamo``'s before)."""
    compiler = getattr(torch, 'compiler', None)
    if compiler is not None and hasattr(compiler, 'is_compiling'):
        return compiler.is_compiling()
    try:
        from torch._dynamo import is_compiling as dynamo_is_compiling
    except ImportError:  # pragma: no cover - every supported torch has torch._dynamo
        return False
    return dynamo_is_compiling()


def fake_mode_active() -> bool:
    """Whether a fake-tensor mode (``torch.compile`` / ``torch.export`` tracing) is active."""
    from torch._guards import detect_fake_mode
    return detect_fake_mode() is not None


def add_safe_globals(objects) -> bool:
    """Allow-list ``objects`` for ``torch.load(weights_only=True)``; False where torch has no allow-list (< 2.4,
    whose ``torch.load`` defaults to ``weights_only=False``)."""
    register = getattr(torch.serialization, 'add_safe_globals', None)
    if register is None:
        return False
    register(list(objects))
    return True


def autocast_dtype(device_type: str):
    """The dtype autocast casts to on ``device_type`` ('cuda', 'cpu', ...), or None when autocast is off there."""
    if hasattr(torch, 'get_autocast_dtype'):
        return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
    if device_type == 'cuda':
        return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None
    if device_type == 'cpu':
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
    return None


def event_start_ns(event) -> int:
    """Start time in ns of a ``torch.profiler`` Kineto event."""
    return event.start_ns() if hasattr(event, 'start_ns') else int(event.start_us() * 1000)
