"""The decoupled dynamic filter op, ``ddf`` (docs/ddf.md), as the ``torch.library`` custom op ``mmdynconv::ddf``.

The custom op (with fake implementations and registered autograd, :func:`~.compat.register_op`) keeps
``torch.compile(fullgraph=True)`` free of graph breaks; its backward is the custom op ``mmdynconv::ddf_backward``.
Double backward is not supported. Backends: ``'reference'`` (:mod:`.ddf_reference`) and ``'triton'``
(:mod:`.ddf_triton`).
"""
import torch
import torch.nn.functional as F

from .arguments import FLOAT_DTYPES, check_choice, check_int, check_like, check_tensor
from .backend import BACKENDS, resolve_backend
from .compat import NAMESPACE, register_op, reject_double_backward
from .ddf_reference import DDFOptions, ddf_backward_reference, ddf_forward_reference, output_memory_format

OP_NAME = 'ddf'
OP_BACKENDS = BACKENDS
COMBINES = ('mul', 'add')

__all__ = ['OP_NAME', 'OP_BACKENDS', 'COMBINES', 'ddf', 'check_ddf_args', 'ddf_functional']


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
    options = check_ddf_args(x, channel_filter, spatial_filter, DDFOptions(kernel_size, stride, dilation, combine))
    backend = resolve_backend(backend, x.device, OP_NAME, OP_BACKENDS)
    return _ddf_op(x, channel_filter, spatial_filter, *options, backend)


def check_ddf_args(x, channel_filter, spatial_filter, options):
    """``options`` (:class:`~.ddf_reference.DDFOptions`) if the arguments of :func:`ddf` are valid; TypeError /
    ValueError naming the argument otherwise."""
    for name, t in (('x', x), ('channel_filter', channel_filter), ('spatial_filter', spatial_filter)):
        check_tensor(OP_NAME, name, t, FLOAT_DTYPES, ndim=4)
        check_like(OP_NAME, name, t, 'x', x, dtype=True)
    kernel_size, stride, dilation, combine = options
    check_int(OP_NAME, 'kernel_size', kernel_size, 1)
    if kernel_size % 2 == 0:
        raise ValueError(f'{OP_NAME}: kernel_size must be odd, got {kernel_size}')
    check_int(OP_NAME, 'stride', stride, 1)
    check_int(OP_NAME, 'dilation', dilation, 1)
    check_choice(OP_NAME, 'combine', combine, COMBINES)
    B, C, H, W = x.shape
    k2 = kernel_size * kernel_size
    if tuple(channel_filter.shape) != (B, C, kernel_size, kernel_size):
        raise ValueError(f'{OP_NAME}: channel_filter must have shape (B, C, k, k) = '
                         f'{(B, C, kernel_size, kernel_size)}, got {tuple(channel_filter.shape)}')
    Bs, Cs, Hs, Ws = spatial_filter.shape
    if Bs != B or Cs == 0 or Cs % k2 != 0:
        raise ValueError(f'{OP_NAME}: spatial_filter must have shape (B, G·k², Ho, Wo) with B = {B}, k² = {k2} and '
                         f'G >= 1 heads, got {tuple(spatial_filter.shape)}')
    if C % (Cs // k2) != 0:
        raise ValueError(f'{OP_NAME}: the {Cs // k2} heads of spatial_filter (channels {Cs} = heads·k²) must divide '
                         f'the {C} channels of x')
    out_hw = ((H - 1) // stride + 1, (W - 1) // stride + 1)
    if (Hs, Ws) != out_hw:
        raise ValueError(f'{OP_NAME}: spatial_filter must have spatial size (Ho, Wo) = (⌈H/stride⌉, ⌈W/stride⌉) = '
                         f'{out_hw}, got {(Hs, Ws)}')
    return options


def _impl(backend):
    if backend == 'triton':
        from . import ddf_triton  # imported on first use: TRITON_INTERPRET is read when kernels are defined
        return ddf_triton.ddf_forward_triton, ddf_triton.ddf_backward_triton
    return ddf_forward_reference, ddf_backward_reference


def _forward(x: torch.Tensor, channel_filter: torch.Tensor, spatial_filter: torch.Tensor, kernel_size: int,
             stride: int, dilation: int, combine: str, backend: str) -> torch.Tensor:
    forward, _ = _impl(backend)
    return forward(x, channel_filter, spatial_filter, DDFOptions(kernel_size, stride, dilation, combine))


def _fake(x, channel_filter, spatial_filter, kernel_size, stride, dilation, combine, backend):
    shape = (x.shape[0], x.shape[1], spatial_filter.shape[2], spatial_filter.shape[3])
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=output_memory_format(x))


def _backward_impl(grad: torch.Tensor, x: torch.Tensor, channel_filter: torch.Tensor, spatial_filter: torch.Tensor,
                   kernel_size: int, stride: int, dilation: int, combine: str, backend: str, need_x: bool,
                   need_fc: bool, need_fs: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (x, channel_filter, spatial_filter); one not needed is returned as an empty tensor."""
    _, backward = _impl(backend)
    grads = backward(grad, x, channel_filter, spatial_filter, DDFOptions(kernel_size, stride, dilation, combine),
                     (need_x, need_fc, need_fs))
    return tuple(x.new_empty(0) if g is None else g for g in grads)


def _backward_fake(grad, x, channel_filter, spatial_filter, kernel_size, stride, dilation, combine, backend, need_x,
                   need_fc, need_fs):
    return (torch.empty_like(x) if need_x else x.new_empty(0),
            torch.empty_like(channel_filter, memory_format=torch.contiguous_format) if need_fc else x.new_empty(0),
            torch.empty_like(spatial_filter, memory_format=torch.contiguous_format) if need_fs else x.new_empty(0))


def _setup_context(ctx, inputs, output):
    x, channel_filter, spatial_filter, *args = inputs
    ctx.save_for_backward(x, channel_filter, spatial_filter)
    ctx.args = args  # kernel_size, stride, dilation, combine, backend


def _backward(ctx, grad):
    needs = ctx.needs_input_grad[:3]
    grads = _ddf_backward_op(grad, *ctx.saved_tensors, *ctx.args, *needs)
    return (*(g if n else None for g, n in zip(grads, needs)), None, None, None, None, None)


def ddf_functional(x, channel_filter, spatial_filter, kernel_size, stride=1, dilation=1, combine='mul'):
    """Same result as :func:`mmdynconv.ops.ddf` (docs/ddf.md), written with out-of-place ops only.

    Shapes: x (B, C, H, W); channel_filter (B, C, k, k); spatial_filter (B, G·k², Ho, Wo) → (B, C, Ho, Wo).
    Accumulates in x's dtype (exports run in fp32).
    """
    b, c, h, w = x.shape
    k, s, d = kernel_size, stride, dilation
    k2 = k * k
    g = spatial_filter.shape[1] // k2
    ho, wo = spatial_filter.shape[2:]
    pad = (k - 1) // 2 * d
    xg = F.pad(x, (pad, pad, pad, pad)).reshape(b, g, c // g, h + 2 * pad, w + 2 * pad)
    fs = spatial_filter.reshape(b, g, 1, k2, ho, wo)
    fc = channel_filter.reshape(b, g, c // g, k2, 1, 1)
    out = None
    for i in range(k):
        for j in range(k):
            t = i * k + j
            window = xg[:, :, :, i * d:i * d + (ho - 1) * s + 1:s, j * d:j * d + (wo - 1) * s + 1:s]
            tap = fs[:, :, :, t] * fc[:, :, :, t] if combine == 'mul' else fs[:, :, :, t] + fc[:, :, :, t]
            out = tap * window if out is None else out + tap * window
    return out.reshape(b, c, ho, wo)


def _export_form(x, channel_filter, spatial_filter, kernel_size, stride, dilation, combine, backend):
    return ddf_functional(x, channel_filter, spatial_filter, kernel_size, stride, dilation, combine)


_ddf_op = register_op(f'{NAMESPACE}::{OP_NAME}', _forward, _fake, _backward, _setup_context, _export_form)
_ddf_backward_op = register_op(f'{NAMESPACE}::{OP_NAME}_backward', _backward_impl, _backward_fake,
                               reject_double_backward(OP_NAME))
