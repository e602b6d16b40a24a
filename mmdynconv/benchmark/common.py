"""Helpers shared by the case modules: dtypes, Triton availability, layer building by registry name."""
import torch

from ..ops.backend import triton_available, triton_interpreter_enabled
from .harness import SkipCase

__all__ = ['DTYPES', 'shape_label', 'triton_skip', 'registered', 'build_registered', 'module_case']

DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}


def shape_label(shape):
    return '×'.join(map(str, shape))


def triton_skip(settings):
    """'' when the Triton kernels can run here: CUDA, or the interpreter on CPU at the small shapes only."""
    if not triton_available():
        return 'triton is not installed'
    if settings.cuda:
        return ''
    if triton_interpreter_enabled():
        return '' if settings.shapes == 'small' else 'Triton interpreter: small shapes only'
    return 'needs CUDA (or TRITON_INTERPRET=1 with --shapes small)'


def registered(name):
    """'' when ``name`` is a type in mmengine's root ``MODELS`` (after importing mmdynconv), else the reason."""
    try:
        import mmengine  # noqa: F401
    except ImportError:
        return 'mmengine is not installed'
    from mmengine.registry import MODELS

    import mmdynconv  # noqa: F401  (registers the layers)
    return '' if MODELS.get(name) is not None else f"'{name}' is not registered (yet) in MODELS"


def build_registered(cfg, device, dtype):
    """``MODELS.build(cfg)`` moved to ``device`` / ``dtype``, in train mode; :class:`SkipCase` when the registered
    type does not take these arguments."""
    from mmengine.registry import MODELS
    try:
        module = MODELS.build(cfg)
    except TypeError as err:  # a registered type with another signature: report it, measure the others
        raise SkipCase(f"building {cfg['type']!r} failed: {err}") from err
    return module.to(device=device, dtype=dtype).train()


def module_case(module, x):
    """(fn, leaves) of ``module(x)`` with gradients for x and every parameter."""
    return (lambda: module(x)), [x] + [p for p in module.parameters() if p.requires_grad]
