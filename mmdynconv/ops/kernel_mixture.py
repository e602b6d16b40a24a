"""Kernel-mixture convolution: each sample convolved with its own mix of E expert kernels (CondConv, DY-Conv, ODConv).

``y_b = conv(x_b, W_b) + bias_b`` with, for output channel o of group g, input channel i of that group and tap u,

    W_b[o, i, u] = α_out[b, o] · α_in[b, g·Cig + i] · α_pos[b, u] · Σ_e r[b, e] · W_e[o, i, u]

(r: routing weights (B, E); every α optional, i.e. 1). CondConv and DY-Conv use r only, ODConv all four
(α_pos is its spatial attention, r its kernel attention). Public function :func:`kernel_mixture_conv`; custom ops
``mmdynconv::kernel_mixture_conv`` and ``mmdynconv::kernel_mixture_conv_backward`` (``torch.library``, with fake
implementations, so ``torch.compile`` and FLOP counters see one op). One backend, ``'reference'`` (no Triton kernel).

Memory: neither the B·E·Co·Cig·k² products of the straightforward formulation
(:func:`kernel_mixture_conv_reference`) nor its saved B·Co·Cig·k² kernels are formed or kept. Samples are processed
in chunks (:func:`~.per_sample_conv.sample_chunks`); a chunk's mixed kernel is one GEMM (b, E) @ (E, Co·Cig·k²),
scaled by the attentions and applied by the shared per-sample grouped conv (:mod:`.per_sample_conv`). Backward saves
only the op's inputs and recomputes each chunk's kernel; with
D = dW_b and M_b = Σ_e r_be W_e:

    dM = D ⊙ α_out ⊙ α_in ⊙ α_pos,  dr_b = dM_b · W^T,  dW_e = Σ_b r_be · dM_b,
    dα_out[o] = Σ_{i,u} D·M·α_in·α_pos,  dα_in[i] = Σ_{o,u} D·M·α_out·α_pos,  dα_pos[u] = Σ_{o,i} D·M·α_out·α_in.

Dtypes: the kernels are mixed in fp32 (fp64 when the experts are fp64); the convolution runs in the autocast dtype
when autocast is on for x's device, else in x's dtype, and returns that dtype. Gradients come back in each input's
dtype.
"""
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from .arguments import FLOAT_DTYPES, check_like, check_tensor
from .backend import resolve_backend
from .compat import NAMESPACE, register_op, reject_double_backward
from .per_sample_conv import (
    ConvGeometry,
    ConvShape,
    check_conv_geometry,
    conv_dtype,
    per_sample_conv_backward,
    per_sample_conv_forward,
    sample_chunks,
)

CHUNK_ELEMENTS = 1 << 23   # mixed-kernel entries per chunk (32 MiB fp32; at least one sample, at most MAX_CHUNKS)
MAX_CHUNKS = 8
OP_NAME = 'kernel_mixture_conv'
OP_BACKENDS = ('reference',)

__all__ = ['OP_NAME', 'OP_BACKENDS', 'MixtureTensors', 'kernel_mixture_conv', 'kernel_mixture_conv_reference',
           'check_kernel_mixture_conv_args']


class MixtureTensors(NamedTuple):
    """The tensor arguments of :func:`kernel_mixture_conv`, in the order of the custom op's schema."""
    x: torch.Tensor                        # (B, Ci, H, W)
    weight: torch.Tensor                   # (E, Co, Ci/groups, kh, kw)
    routing: torch.Tensor                  # (B, E)
    spatial_att: Optional[torch.Tensor]    # (B, kh, kw)
    in_att: Optional[torch.Tensor]         # (B, Ci)
    out_att: Optional[torch.Tensor]        # (B, Co)
    bias: Optional[torch.Tensor]           # (Co,) or (B, Co)


def kernel_mixture_conv(x, weight, routing, spatial_att=None, in_att=None, out_att=None, bias=None, stride=1,
                        padding=0, dilation=1, groups=1, backend=None):
    """Convolve every sample with its own mixture of expert kernels (see the module docstring).

    Args:
        x: (B, Ci, H, W).
        weight: (E, Co, Ci/groups, kh, kw) expert kernels.
        routing: (B, E) mixing weights r (sigmoid routing, softmax attention, ...; any values).
        spatial_att: (B, kh, kw) or None. in_att: (B, Ci) or None. out_att: (B, Co) or None.
        bias: (Co,), (B, Co) (a per-sample bias, e.g. mixed expert biases) or None.
        stride, padding, dilation: ints or pairs (padding >= 0, the others >= 1). groups: divides Ci and Co.
        backend: None (automatic) or 'reference', the only implementation (see :mod:`mmdynconv.ops.backend`).

    Returns:
        (B, Co, Ho, Wo), Ho/Wo as for ``nn.Conv2d``; differentiable in every tensor argument (first order).
    """
    tensors = MixtureTensors(x, weight, routing, spatial_att, in_att, out_att, bias)
    geometry = check_kernel_mixture_conv_args(tensors, check_conv_geometry(OP_NAME, stride, padding, dilation, groups))
    resolve_backend(backend, x.device, OP_NAME, OP_BACKENDS)
    return _mixture_op(*tensors, *_op_geometry(geometry), conv_dtype(x))


def kernel_mixture_conv_reference(x, weight, routing, spatial_att=None, in_att=None, out_att=None, bias=None,
                                  stride=1, padding=0, dilation=1, groups=1):
    """The straightforward formulation (as the papers' code does it): form the (B, E, Co, Cig, kh, kw) products
    r·W_e, sum them, scale, and run one grouped conv; autograd keeps the (B, Co, Cig, kh, kw) kernels. Same arguments
    and result as :func:`kernel_mixture_conv` (no autocast handling); the benchmark baseline."""
    b, e = routing.shape
    w = (routing.view(b, e, 1, 1, 1, 1) * weight.unsqueeze(0)).sum(1)          # (B, Co, Cig, kh, kw)
    if spatial_att is not None:
        w = w * spatial_att.view(b, 1, 1, *spatial_att.shape[1:])
    if out_att is not None:
        w = w * out_att.view(b, -1, 1, 1, 1)
    if in_att is not None:
        cig = weight.shape[2]
        w = (w.view(b, groups, -1, cig, *w.shape[3:]) * in_att.view(b, groups, 1, cig, 1, 1)).view(w.shape)
    y = F.conv2d(x.reshape(1, -1, *x.shape[2:]), w.reshape(-1, *w.shape[2:]), None, stride, padding, dilation,
                 groups * b)
    y = y.view(b, -1, *y.shape[2:])
    if bias is not None:
        y = y + (bias.view(1, -1, 1, 1) if bias.dim() == 1 else bias[:, :, None, None])
    return y


def check_kernel_mixture_conv_args(tensors: MixtureTensors, geometry: ConvGeometry):
    """``geometry`` if the arguments of :func:`kernel_mixture_conv` are valid (``geometry`` from
    :func:`~.per_sample_conv.check_conv_geometry`); TypeError / ValueError naming the argument otherwise."""
    x, weight, _, _, _, _, bias = tensors
    for name, t in tensors._asdict().items():
        if t is None and name not in ('x', 'weight', 'routing'):
            continue
        check_tensor(OP_NAME, name, t, FLOAT_DTYPES)
        check_like(OP_NAME, name, t, 'x', x)
    if x.dim() != 4:
        raise ValueError(f'{OP_NAME}: x must be (B, Ci, H, W), got shape {tuple(x.shape)}')
    if weight.dim() != 5:
        raise ValueError(f'{OP_NAME}: weight must be (E, Co, Ci/groups, kh, kw), got shape {tuple(weight.shape)}')
    b, ci, h, w = x.shape
    e, co, cig, kh, kw = weight.shape
    groups = geometry.groups
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1 or ci % groups or co % groups:
        raise ValueError(f'{OP_NAME}: groups must be a positive int dividing Ci = {ci} and Co = {co}, got {groups!r}')
    if cig * groups != ci:
        raise ValueError(f'{OP_NAME}: weight must have Ci/groups = {ci // groups} input channels, got shape '
                         f'{tuple(weight.shape)}')
    expected = dict(routing=(b, e), spatial_att=(b, kh, kw), in_att=(b, ci), out_att=(b, co))
    for name, shape in expected.items():
        t = getattr(tensors, name)
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f'{OP_NAME}: {name} must have shape {shape}, got {tuple(t.shape)}')
    if bias is not None and tuple(bias.shape) not in ((co,), (b, co)):
        raise ValueError(f'{OP_NAME}: bias must have shape ({co},) or ({b}, {co}), got {tuple(bias.shape)}')
    s = ConvShape(x.shape, co, (kh, kw), *geometry)
    if s.ho < 1 or s.wo < 1:
        raise ValueError(f'{OP_NAME}: input {h}×{w} is too small for kernel {kh}×{kw} with padding '
                         f'{geometry.padding} and dilation {geometry.dilation} (output {s.ho}×{s.wo})')
    return geometry


def _op_geometry(geometry):
    """``geometry`` as the custom op's (stride, padding, dilation, groups) arguments (lists for ``int[]``)."""
    return list(geometry.stride), list(geometry.padding), list(geometry.dilation), geometry.groups


class _Mixture:
    """The op's small tensors in the mixing dtype and the per-chunk mixed kernels, viewed (b, G, Cog, Cig, kh, kw)."""

    def __init__(self, tensors: MixtureTensors, s: ConvShape):
        _, weight, routing, spatial_att, in_att, out_att, _ = tensors
        self.s = s
        self.dtype = torch.promote_types(weight.dtype, torch.float32)
        self.experts = weight.to(self.dtype).reshape(weight.shape[0], -1)      # (E, N), N = Co·Cig·kh·kw
        self.routing = routing.to(self.dtype)
        g, cog = s.groups, s.co // s.groups
        self.out = out_att.to(self.dtype).view(s.b, g, cog, 1, 1, 1) if out_att is not None else None
        self.inp = in_att.to(self.dtype).view(s.b, g, 1, s.cig, 1, 1) if in_att is not None else None
        self.pos = spatial_att.to(self.dtype).view(s.b, 1, 1, 1, s.kh, s.kw) if spatial_att is not None else None

    def view6(self, t):
        s = self.s
        return t.view(t.shape[0], s.groups, s.co // s.groups, s.cig, s.kh, s.kw)

    def mixed(self, rows):
        """M_b = Σ_e r_be W_e of samples ``rows``: (b, G, Cog, Cig, kh, kw)."""
        return self.view6(self.routing[rows] @ self.experts)

    def scale(self, t, rows, in_place):
        """t ⊙ α_out ⊙ α_in ⊙ α_pos (present ones) of samples ``rows``; in place or into a new tensor."""
        for factor in (self.out, self.inp, self.pos):
            if factor is not None:
                t = t.mul_(factor[rows]) if in_place else t * factor[rows]
                in_place = True
        return t

    def kernels(self, mixed, rows, dtype, in_place):
        """The conv weight W_b of samples ``rows`` in ``dtype``, as the (b, Co, kh, kw, Cig) view the per-sample conv
        reads; ``mixed`` is overwritten when ``in_place``."""
        w = self.scale(mixed, rows, in_place).to(dtype)
        return w.view(w.shape[0], self.s.co, self.s.cig, self.s.kh, self.s.kw).permute(0, 1, 3, 4, 2)


def _shape(x, weight, stride, padding, dilation, groups):
    return ConvShape(x.shape, weight.shape[1], weight.shape[3:], stride, padding, dilation, groups)


def _add_bias(y, bias):
    if bias is not None:
        y.add_((bias.view(1, -1, 1, 1) if bias.dim() == 1 else bias[:, :, None, None]).to(y.dtype))


def _forward(x: torch.Tensor, weight: torch.Tensor, routing: torch.Tensor, spatial_att: Optional[torch.Tensor],
             in_att: Optional[torch.Tensor], out_att: Optional[torch.Tensor], bias: Optional[torch.Tensor],
             stride: list[int], padding: list[int], dilation: list[int], groups: int,
             dtype: torch.dtype) -> torch.Tensor:
    tensors = MixtureTensors(x, weight, routing, spatial_att, in_att, out_att, bias)
    s = _shape(x, weight, stride, padding, dilation, groups)
    with torch.autocast(x.device.type, enabled=False):
        mix = _Mixture(tensors, s)
        inp = x.to(dtype)
        y = torch.empty(s.b, s.co, s.ho, s.wo, dtype=dtype, device=x.device)
        for rows in sample_chunks(s.b, s.entries, CHUNK_ELEMENTS, MAX_CHUNKS):
            y[rows] = per_sample_conv_forward(inp, mix.kernels(mix.mixed(rows), rows, dtype, True), rows, s)
        _add_bias(y, bias)
    return y


def _fake(x, weight, routing, spatial_att, in_att, out_att, bias, stride, padding, dilation, groups, dtype):
    s = _shape(x, weight, stride, padding, dilation, groups)
    return x.new_empty((s.b, s.co, s.ho, s.wo), dtype=dtype)


def _backward_impl(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, routing: torch.Tensor,
                   spatial_att: Optional[torch.Tensor], in_att: Optional[torch.Tensor],
                   out_att: Optional[torch.Tensor], bias: Optional[torch.Tensor], stride: list[int],
                   padding: list[int], dilation: list[int], groups: int, dtype: torch.dtype,
                   needs: list[bool]) -> list[torch.Tensor]:
    """Gradients of (x, weight, routing, spatial_att, in_att, out_att, bias); one not needed is an empty tensor."""
    tensors = MixtureTensors(x, weight, routing, spatial_att, in_att, out_att, bias)
    with torch.autocast(x.device.type, enabled=False):
        grads = _gradients(grad, tensors, _shape(x, weight, stride, padding, dilation, groups), dtype, needs)
    return [x.new_empty(0) if g is None else g for g in grads]


def _backward_fake(grad, x, weight, routing, spatial_att, in_att, out_att, bias, stride, padding, dilation, groups,
                   dtype, needs):
    inputs = (x, weight, routing, spatial_att, in_att, out_att, bias)
    return [torch.empty_like(t, memory_format=torch.contiguous_format) if need and t is not None else x.new_empty(0)
            for t, need in zip(inputs, needs)]


def _gradients(grad_y, tensors: MixtureTensors, s: ConvShape, dtype, needs):
    """Gradients of ``tensors`` (None where ``needs``, seven bools, says no) for the output gradient ``grad_y``
    (B, Co, Ho, Wo); the convolution runs in ``dtype``."""
    x, weight, routing, spatial_att, in_att, out_att, bias = tensors
    need_x, need_w, need_r, need_pos, need_in, need_out, need_bias = needs
    grads = [None] * 7
    if need_bias and bias is not None:
        gb = grad_y.to(torch.promote_types(grad_y.dtype, torch.float32)).sum((2, 3))
        grads[6] = (gb.sum(0) if bias.dim() == 1 else gb).to(bias.dtype)
    need_pos, need_in, need_out = (need and t is not None for need, t in
                                   ((need_pos, spatial_att), (need_in, in_att), (need_out, out_att)))
    need_kernel = need_w or need_r or need_pos or need_in or need_out
    if not (need_x or need_kernel):
        return grads
    mix = _Mixture(tensors, s)
    inp, grad_y = x.to(dtype), grad_y.to(dtype)
    gx = torch.empty_like(x) if need_x else None
    gw = None                                                                     # dW_e: (E, N), mixing dtype
    small = {key: torch.empty(s.b, *shape, dtype=mix.dtype, device=x.device) for key, shape, need in
             (('r', (routing.shape[1],), need_r), ('pos', (s.kh, s.kw), need_pos), ('in', (s.ci,), need_in),
              ('out', (s.co,), need_out)) if need}
    need_q = need_pos or need_in or need_out
    for rows in sample_chunks(s.b, s.entries, CHUNK_ELEMENTS, MAX_CHUNKS):
        mixed = mix.mixed(rows)
        kernels = mix.kernels(mixed, rows, dtype, not need_q) if need_x else None
        grad_rows = grad_y[rows]
        gi, dk = per_sample_conv_backward(inp, rows, kernels, grad_rows if need_x else None,
                                          grad_rows if need_kernel else None, s)
        del kernels
        if gi is not None:
            gx[rows] = gi
            del gi
        if not need_kernel:
            continue
        d = mix.view6(dk.permute(0, 1, 4, 2, 3).to(mix.dtype).contiguous())      # dW_b: (b, G, Cog, Cig, kh, kw)
        del dk
        if need_q:
            _attention_grads(d * mixed, mix, rows, small)
        del mixed
        if need_w or need_r:
            dm = mix.scale(d, rows, True).flatten(1)                              # dM_b: (b, N)
            if need_r:
                small['r'][rows] = dm @ mix.experts.T
            if need_w:
                gw = mix.routing[rows].T @ dm if gw is None else gw.addmm_(mix.routing[rows].T, dm)
            del dm
        del d
    grads[0] = gx
    if need_w:   # (a fresh tensor, not a view: autograd can keep it); zero for an empty batch
        grads[1] = weight.new_zeros(weight.shape) if gw is None else gw.view(weight.shape).to(weight.dtype)
    for index, key, ref in ((2, 'r', routing), (3, 'pos', spatial_att), (4, 'in', in_att), (5, 'out', out_att)):
        if key in small:
            grads[index] = small[key].view(ref.shape).to(ref.dtype)
    return grads


def _attention_grads(q, mix, rows, small):
    """d α_pos, d α_in, d α_out of samples ``rows`` from Q = dW ⊙ M (b, G, Cog, Cig, kh, kw); absent factors are 1.

    Two batched matmuls read Q in place: R1[o, u] = Σ_i Q·α_in and R2[o, i] = Σ_u Q·α_pos; the rest is small."""
    b = q.shape[0]
    s = mix.s
    cog, bg, k2 = s.co // s.groups, b * s.groups, s.kh * s.kw
    ones = q.new_ones(())
    out = mix.out[rows].reshape(bg, cog) if mix.out is not None else ones.expand(bg, cog)
    inp = mix.inp[rows].reshape(bg, 1, 1, s.cig) if mix.inp is not None else ones.expand(bg, 1, 1, s.cig)
    pos = mix.pos[rows].reshape(b, 1, k2) if mix.pos is not None else ones.expand(b, 1, k2)
    q = q.view(bg, cog, s.cig, k2)
    if 'pos' in small or 'out' in small:
        r1 = torch.matmul(inp, q).view(b, s.groups * cog, k2)                       # (b, Co, k²)
        if 'pos' in small:
            small['pos'][rows] = torch.bmm(out.reshape(b, 1, -1), r1).view(b, s.kh, s.kw)
        if 'out' in small:
            small['out'][rows] = (r1 * pos).sum(-1)
    if 'in' in small:
        pos_g = pos.view(b, 1, k2, 1).expand(b, s.groups, k2, 1).reshape(bg, 1, k2, 1)
        r2 = torch.matmul(q, pos_g).view(bg, cog, s.cig)                             # (b·G, Cog, Cig)
        small['in'][rows] = torch.bmm(out.view(bg, 1, cog), r2).view(b, s.ci)


def _setup_context(ctx, inputs, output):
    x, weight, routing, spatial_att, in_att, out_att, bias, *args = inputs
    ctx.save_for_backward(x, weight, routing, spatial_att, in_att, out_att, bias)
    ctx.args = args  # stride, padding, dilation, groups, dtype


def _backward(ctx, grad):
    needs = list(ctx.needs_input_grad[:7])
    grads = _mixture_backward_op(grad, *ctx.saved_tensors, *ctx.args, needs)
    return (*(g if n else None for g, n in zip(grads, needs)), None, None, None, None, None)


def _export_form(x, weight, routing, spatial_att, in_att, out_att, bias, stride, padding, dilation, groups, dtype):
    """The reference in ``dtype``: the mixed kernels and one grouped conv (standard ops)."""
    return kernel_mixture_conv_reference(x.to(dtype), weight.to(dtype), routing.to(dtype), spatial_att, in_att,
                                         out_att, bias, stride, padding, dilation, groups)


_mixture_op = register_op(f'{NAMESPACE}::{OP_NAME}', _forward, _fake, _backward, _setup_context, _export_form)
_mixture_backward_op = register_op(f'{NAMESPACE}::{OP_NAME}_backward', _backward_impl, _backward_fake,
                                   reject_double_backward(OP_NAME))
