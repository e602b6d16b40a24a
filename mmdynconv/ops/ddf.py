"""The decoupled dynamic filter op, ``ddf`` (docs/ddf.md), as the ``torch.library`` custom op ``mmdynconv::ddf``.

The custom op (with fake implementations and registered autograd) keeps ``torch.compile(fullgraph=True)`` free of
graph breaks; its backward is the custom op ``mmdynconv::ddf_backward``. Double backward is not supported.
"""
import torch

from .arguments import check_int
from .backend import resolve_backend
from .compat import custom_op
from .ddf_reference import ddf_backward_reference, ddf_forward_reference, output_memory_format

COMBINES = ('mul', 'add')
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def ddf(x, channel_filter, spatial_filter, kernel_size, stride=1, dilation=1, combine='mul', backend=None):
    """Decoupled dynamic filter: a depthwise k×k filter whose kernel combines a per-pixel and a per-channel filter.

    ``out[b,c,y,x] = Σ_{i,j} K·x[b, c, y·s + (i−r)·d, x·s + (j−r)·d]`` (zero outside the image, r = (k−1)/2) with
    ``K = fs[b, h·k² + i·k + j, y, x] · fc[b, c, i, j]`` for ``combine='mul'`` or ``fs + fc`` for ``'add'``, where
    head h = c // (C/G) owns channels [h·C/G, (h+1)·C/G).

    Args:
        x: (B, C, H, W), float16/bfloat16/float32/float64.
        channel_filter: (B, C, k, k), same dtype and device as x.
        spatial_filter: (B, G·k², Ho, Wo) with G heads dividing C, Ho = ⌈H/stride⌉, Wo = ⌈W/stride⌉.
        kernel_size: odd k ≥ 1. stride, dilation: ints ≥ 1.
        combine: 'mul' or 'add'.
        backend: None (automatic, see :mod:`mmdynconv.ops.backend` and ``MMDYNCONV_BACKEND``), 'reference' or
            'triton'.

    Returns:
        (B, C, Ho, Wo) in x's dtype (channels-last if x is). Differentiable in x and both filters (first order);
        half-precision inputs accumulate in fp32.
    """
    _validate(x, channel_filter, spatial_filter, kernel_size, stride, dilation, combine)
    backend = resolve_backend(backend, x.device, 'ddf')
    return _ddf_op(x, channel_filter, spatial_filter, kernel_size, stride, dilation, combine, backend)


def _validate(x, channel_filter, spatial_filter, kernel_size, stride, dilation, combine):
    tensors = (('x', x), ('channel_filter', channel_filter), ('spatial_filter', spatial_filter))
    for name, t in tensors:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f'ddf: {name} must be a torch.Tensor, got {type(t).__name__}')
        if t.dim() != 4:
            raise ValueError(f'ddf: {name} must be 4-D, got shape {tuple(t.shape)}')
        if t.dtype not in DTYPES:
            raise TypeError(f'ddf: {name} must be float16, bfloat16, float32 or float64, got {t.dtype}')
        if t.dtype != x.dtype:
            raise TypeError(f"ddf: {name} must have x's dtype {x.dtype}, got {t.dtype}")
        if t.device != x.device:
            raise ValueError(f"ddf: {name} must be on x's device {x.device}, got {t.device}")
    check_int('ddf', 'kernel_size', kernel_size, 1)
    if kernel_size % 2 == 0:
        raise ValueError(f'ddf: kernel_size must be odd, got {kernel_size}')
    check_int('ddf', 'stride', stride, 1)
    check_int('ddf', 'dilation', dilation, 1)
    if combine not in COMBINES:
        raise ValueError(f"ddf: combine must be 'mul' or 'add', got {combine!r}")
    B, C, H, W = x.shape
    k2 = kernel_size * kernel_size
    if tuple(channel_filter.shape) != (B, C, kernel_size, kernel_size):
        raise ValueError(f'ddf: channel_filter must have shape (B, C, k, k) = {(B, C, kernel_size, kernel_size)}, '
                         f'got {tuple(channel_filter.shape)}')
    Bs, Cs, Hs, Ws = spatial_filter.shape
    if Bs != B or Cs == 0 or Cs % k2 != 0:
        raise ValueError(f'ddf: spatial_filter must have shape (B, G·k², Ho, Wo) with B = {B}, k² = {k2} and '
                         f'G >= 1 heads, got {tuple(spatial_filter.shape)}')
    if C % (Cs // k2) != 0:
        raise ValueError(f'ddf: the {Cs // k2} heads of spatial_filter (channels {Cs} = heads·k²) must divide the '
                         f'{C} channels of x')
    out_hw = ((H - 1) // stride + 1, (W - 1) // stride + 1)
    if (Hs, Ws) != out_hw:
        raise ValueError(f'ddf: spatial_filter must have spatial size (Ho, Wo) = (⌈H/stride⌉, ⌈W/stride⌉) = '
                         f'{out_hw}, got {(Hs, Ws)}')


def _impl(backend):
    if backend == 'triton':
        from . import ddf_triton  # imported on first use: TRITON_INTERPRET is read when kernels are defined
        return ddf_triton.ddf_forward_triton, ddf_triton.ddf_backward_triton
    return ddf_forward_reference, ddf_backward_reference


@custom_op('mmdynconv::ddf', mutates_args=())
def _ddf_op(x: torch.Tensor, channel_filter: torch.Tensor, spatial_filter: torch.Tensor, kernel_size: int,
            stride: int, dilation: int, combine: str, backend: str) -> torch.Tensor:
    forward, _ = _impl(backend)
    return forward(x, channel_filter, spatial_filter, kernel_size, stride, dilation, combine)


@_ddf_op.register_fake
def _ddf_fake(x, channel_filter, spatial_filter, kernel_size, stride, dilation, combine, backend):
    shape = (x.shape[0], x.shape[1], spatial_filter.shape[2], spatial_filter.shape[3])
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=output_memory_format(x))


@custom_op('mmdynconv::ddf_backward', mutates_args=())
def _ddf_backward_op(grad: torch.Tensor, x: torch.Tensor, channel_filter: torch.Tensor,
                     spatial_filter: torch.Tensor, kernel_size: int, stride: int, dilation: int, combine: str,
                     backend: str, need_x: bool, need_fc: bool,
                     need_fs: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (x, channel_filter, spatial_filter); one not needed is returned as an empty tensor."""
    _, backward = _impl(backend)
    grads = backward(grad, x, channel_filter, spatial_filter, kernel_size, stride, dilation, combine,
                     need_x, need_fc, need_fs)
    return tuple(x.new_empty(0) if g is None else g for g in grads)


@_ddf_backward_op.register_fake
def _ddf_backward_fake(grad, x, channel_filter, spatial_filter, kernel_size, stride, dilation, combine, backend,
                       need_x, need_fc, need_fs):
    return (torch.empty_like(x) if need_x else x.new_empty(0),
            torch.empty_like(channel_filter, memory_format=torch.contiguous_format) if need_fc else x.new_empty(0),
            torch.empty_like(spatial_filter, memory_format=torch.contiguous_format) if need_fs else x.new_empty(0))


def _setup_context(ctx, inputs, output):
    x, channel_filter, spatial_filter, *args = inputs
    ctx.save_for_backward(x, channel_filter, spatial_filter)
    ctx.args = args  # kernel_size, stride, dilation, combine, backend


def _backward(ctx, grad):
    need = ctx.needs_input_grad[:3]
    grads = _ddf_backward_op(grad, *ctx.saved_tensors, *ctx.args, *need)
    return (*(g if n else None for g, n in zip(grads, need)), None, None, None, None, None)


def _no_double_backward(ctx, *grads):
    raise NotImplementedError('ddf: double backward (differentiating the gradient of ddf) is not supported')


_ddf_op.register_autograd(_backward, setup_context=_setup_context)
_ddf_backward_op.register_autograd(_no_double_backward, setup_context=lambda ctx, inputs, output: None)
