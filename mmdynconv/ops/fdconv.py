"""FDConv's per-sample dynamic convolution (docs/fdconv.md) as the ``torch.library`` custom op ``mmdynconv::fdconv``.

``y_b = conv(x_b, W_b) + bias`` with ``W_b = α_in ⊙ α_out ⊙ α_pos ⊙ α_local ⊙ irfft2(spectrum·scale·π_b[band])``,
α_local = 2·sigmoid(conv1d(local_feat)) dense over (Co, Ci, k, k). Same pattern as :mod:`.ddf`: one public function
that validates and picks a backend, a custom op with a fake implementation and registered autograd (its backward is
the custom op ``mmdynconv::fdconv_backward``; double backward is not supported), so ``torch.compile(fullgraph=True)``
traces through it. The straightforward implementation the tests compare against is
:func:`~mmdynconv.ops.fdconv_oracle.fdconv_oracle`. Both take the tensors grouped: the layer's parameters as
:class:`~.fdconv_inputs.FDConvWeight`, the per-sample attentions as :class:`~.fdconv_inputs.FDConvAttention` (the
custom ops, whose schema needs flat tensors, take them one by one).

Backends: ``'reference'`` is the torch code of :mod:`.fdconv_assembly` and :mod:`.per_sample_conv`; ``'triton'``
replaces the per-entry passes of the kernel assembly (local logits, sigmoid, the products that make W, and their
gradients) by the fused kernels of :mod:`.fdconv_triton`. Both are memory-lean:

- everything per sample runs in chunks of samples (``CHUNK_ELEMENTS`` kernel entries, at least one sample, at most
  ``MAX_CHUNKS`` chunks), the grouped convolution included: the forward never holds more than a chunk's W, the
  backward rebuilds W, takes dx and dW and reduces dW into the attention and spectrum gradients chunk by chunk;
- the only B·Co·Ci·k² tensor that may be saved for backward is the mixed kernel irfft2(spectrum·π_b), and only when
  B·Co·Ci·k² ≤ ``SAVE_TILES_ELEMENTS`` (it costs an inverse FFT per sample to recompute); above that it is
  recomputed. The dense local attention is always recomputed from its 1-D conv (a GEMM of depth κ);
- α_in / α_out are folded into W_b, or applied to the activations when that is cheaper
  (Co·Ci·k² > Ci·H·W + Co·Ho·Wo, the usual case in the deep stages);
- 1×1 kernels without padding run as batched matmuls, others as one convolution with groups = samples per chunk.

The spectral work runs in fp32 (also under autocast); the convolution runs in the autocast dtype when autocast is on,
else in x's dtype.
"""
from typing import List, NamedTuple, Optional

import torch

from .arguments import FLOAT_DTYPES, check_like, check_optional_bool, check_pair, check_tensor
from .backend import BACKENDS, device_guard, resolve_backend
from .compat import register_op, reject_double_backward
from .fdconv_assembly import (
    KernelAssembly,
    allocate_weight_grads,
    finish_spectrum_grad,
    spectral_backward,
    weight_backward,
)
from .fdconv_inputs import FDConvAttention, FDConvWeight, check_fdconv_inputs
from .per_sample_conv import ConvShape, conv_dtype, per_sample_conv_backward, per_sample_conv_forward, sample_chunks

CHUNK_ELEMENTS = 1 << 17       # kernel entries per chunk (512 KiB fp32; at least one sample, at most MAX_CHUNKS chunks)
MAX_CHUNKS = 4
SAVE_TILES_ELEMENTS = 1 << 24  # save the mixed kernels for backward up to this many B·Co·Ci·k² entries (64 MiB)
OP_NAME = 'fdconv_dynamic_conv'  # its custom ops are registered as mmdynconv::fdconv and mmdynconv::fdconv_backward
OP_BACKENDS = BACKENDS

__all__ = ['OP_NAME', 'OP_BACKENDS', 'fdconv_dynamic_conv', 'check_fdconv_dynamic_conv_args',
           'folds_channel_attention']


def fdconv_dynamic_conv(x, weight: FDConvWeight, att: FDConvAttention, bias=None, stride=1, padding=0, dilation=1,
                        fold=None, backend=None):
    """Convolve every sample with its own FDConv kernel W_b (see the module docstring), memory-lean.

    Args:
        x: (B, Ci, H, W) floating.
        weight: the layer's :class:`~.fdconv_inputs.FDConvWeight` (spectrum, band_index, scale, local_weight).
        att: the per-sample :class:`~.fdconv_inputs.FDConvAttention` (kernel_att, local_feat, pos_att, in_att,
            out_att); the shapes are in their docstrings.
        bias: (Co,) or None.
        stride, padding, dilation: ints or pairs. fold: None (choose by cost), True (fold α_in/α_out into W_b) or
            False (apply them to the activations).
        backend: None (automatic: Triton on CUDA when available, see :mod:`.backend` and ``MMDYNCONV_BACKEND``),
            'reference' (torch) or 'triton' (fused kernels for the per-entry work).

    Returns:
        (B, Co, Ho, Wo), differentiable in every tensor but band_index (first order).
    """
    stride, padding = check_pair(OP_NAME, 'stride', stride, 1), check_pair(OP_NAME, 'padding', padding, 0)
    dilation = check_pair(OP_NAME, 'dilation', dilation, 1)
    check_optional_bool(OP_NAME, 'fold', fold)
    check_fdconv_dynamic_conv_args(x, weight, att, bias)
    backend = resolve_backend(backend, x.device, OP_NAME, OP_BACKENDS)
    co = att.out_att.shape[1]
    if fold is None:
        fold = folds_channel_attention(x.shape, co, weight.spectrum.shape[0] // co, stride, padding, dilation)
    y, _ = _fdconv_op(x, weight.spectrum, weight.band_index, att.kernel_att, att.local_feat, weight.local_weight,
                      att.pos_att, att.in_att, att.out_att, bias, float(weight.scale), list(stride), list(padding),
                      list(dilation), fold, backend)
    return y


def folds_channel_attention(x_shape, out_channels, kernel_size, stride=1, padding=0, dilation=1):
    """The cost rule of ``fold=None``: fold α_in/α_out into W_b (True) when Co·Ci·k² ≤ Ci·H·W + Co·Ho·Wo, else apply
    them to the activations (False). ``x_shape`` is (B, Ci, H, W)."""
    k = kernel_size
    stride, padding = check_pair(OP_NAME, 'stride', stride, 1), check_pair(OP_NAME, 'padding', padding, 0)
    dilation = check_pair(OP_NAME, 'dilation', dilation, 1)
    s = ConvShape(tuple(x_shape), out_channels, (k, k), stride, padding, dilation)
    return s.entries <= s.ci * s.h * s.w + s.co * s.ho * s.wo


class _ConvOptions(NamedTuple):
    """The op's non-tensor arguments but scale (which :class:`FDConvWeight` carries), as its schema has them."""
    stride: List[int]
    padding: List[int]
    dilation: List[int]
    fold: bool
    backend: str


class _Geometry(ConvShape):
    """:class:`~.per_sample_conv.ConvShape` plus FDConv's square k, the per-sample chunking, the α_in/α_out folding and
    the save/recompute choice shared by forward, backward and the fake implementation."""

    def __init__(self, x_shape, weight: FDConvWeight, att: FDConvAttention, conv: _ConvOptions):
        co = att.out_att.shape[1]
        self.k = weight.spectrum.shape[0] // co
        super().__init__(x_shape, co, (self.k, self.k), tuple(conv.stride), tuple(conv.padding),
                         tuple(conv.dilation))
        self.fold = conv.fold
        self.chunks = sample_chunks(self.b, self.entries, CHUNK_ELEMENTS, MAX_CHUNKS)
        self.save_tiles = self.b * self.entries <= SAVE_TILES_ELEMENTS
        # a (Co, k, k, Ci) weight is a channels-last conv weight, which makes the convolution convert its input,
        # output and gradients to channels-last: cheaper to copy the weight when it is the smaller side
        activations = self.ci * self.h * self.w + self.co * self.ho * self.wo
        self.contiguous_weight = not self.pointwise and self.entries < activations

    def saved_tiles_shape(self, shared):
        """Shape of the mixed kernels the forward returns for backward: one kernel when shared, none when too big."""
        if shared:
            return (1, self.co, self.k, self.k, self.ci)
        return (self.b, self.co, self.k, self.k, self.ci) if self.save_tiles else (0,)


def _conv_weight(weight, g):
    """The (b, Co, k, k, Ci) weight as a view of a contiguous (b, Co, Ci, k, k) one where
    :attr:`_Geometry.contiguous_weight`, else as it is."""
    return weight.permute(0, 1, 4, 2, 3).contiguous().permute(0, 1, 3, 4, 2) if g.contiguous_weight else weight


def _conv_input(x, in_att, g, dtype):
    inp = x if g.fold else x * in_att.to(x.dtype)[:, :, None, None]
    return inp.to(dtype)


def _forward(x, weight: FDConvWeight, att: FDConvAttention, bias, conv: _ConvOptions):
    """(y, saved mixed kernels) — see :meth:`_Geometry.saved_tiles_shape`."""
    g = _Geometry(x.shape, weight, att, conv)
    dtype = conv_dtype(x)
    with torch.autocast(x.device.type, enabled=False), device_guard(x):
        kernels = KernelAssembly(weight, att, g, conv.backend == 'triton')
        inp = _conv_input(x, att.in_att, g, dtype)
        shared = kernels.tiles(slice(None)).contiguous() if att.kernel_att is None else None
        saved = x.new_empty(g.saved_tiles_shape(shared is not None), dtype=torch.float32) if shared is None else shared
        outputs = []
        for rows in g.chunks:
            if shared is not None:
                tiles = shared
            elif g.save_tiles:
                tiles = kernels.tiles(rows, out=saved[rows])   # written once, straight into the saved buffer
            else:
                tiles = kernels.tiles(rows)
            w = _conv_weight(kernels.weight(tiles, kernels.sigma_or_none(rows), rows, dtype, in_place=True), g)
            outputs.append(per_sample_conv_forward(inp, w, rows, g))
            del w, tiles
        del inp
        if not outputs:   # an empty batch
            outputs.append(x.new_empty(0, g.co, g.ho, g.wo, dtype=dtype))
        y = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        del outputs
        if not g.fold:
            y.mul_(att.out_att.to(dtype)[:, :, None, None])
        if bias is not None:
            y.add_(bias.to(dtype)[None, :, None, None])
    return y, saved


def _backward(grad_y, x, weight: FDConvWeight, att: FDConvAttention, bias, saved_tiles, conv: _ConvOptions, needs):
    """Gradients (x, spectrum, kernel_att, local_feat, local_weight, pos_att, in_att, out_att, bias), None where not
    needed."""
    g = _Geometry(x.shape, weight, att, conv)
    dtype = conv_dtype(x)
    need_x, need_spec, need_kernel, need_feat, need_lw, need_pos, need_in, need_out, need_bias = needs
    grads = dict.fromkeys(('x', 'spec', 'kernel', 'feat', 'lw', 'pos', 'in', 'out', 'bias'))
    grad_y = grad_y.to(dtype)
    if need_bias:
        grads['bias'] = grad_y.float().sum((0, 2, 3)).to(bias.dtype)
    need_weight = any(needs[1:8])
    need_input = need_x or (need_in and not g.fold)
    if not (need_input or need_weight):
        return tuple(grads.values())
    kernels = KernelAssembly(weight, att, g, conv.backend == 'triton')
    inp = _conv_input(x, att.in_att, g, dtype)
    grad_conv = grad_y if g.fold else grad_y * att.out_att.to(dtype)[:, :, None, None]
    if need_x:
        grads['x'] = torch.empty_like(x)
    if need_in and not g.fold:
        grads['in'] = torch.empty(g.b, g.ci, device=x.device)
    allocate_weight_grads(kernels, needs, grads)
    shared = saved_tiles if att.kernel_att is None else None   # one kernel for all samples, always saved
    have_saved = att.kernel_att is not None and saved_tiles.numel() > 0
    shared_grad = None
    for rows in g.chunks:
        tiles = shared if shared is not None else (saved_tiles[rows] if have_saved else kernels.tiles(rows))
        sigma = kernels.sigma_or_none(rows)
        # dW from the raw grad_y when α_out is applied to activations (it is a factor of dW's reductions)
        w = _conv_weight(kernels.weight(tiles, sigma, rows, dtype), g) if need_input else None
        grad_rows = grad_y[rows]
        grad_conv_rows = grad_rows if g.fold else grad_conv[rows]
        gi, gw = per_sample_conv_backward(inp, rows, w, grad_conv_rows if need_input else None,
                                          grad_rows if need_weight else None, g)
        del w
        if gi is not None:
            if not g.fold:
                if need_in:
                    grads['in'][rows] = (gi.float() * x[rows].float()).sum((2, 3))
                gi = gi * att.in_att[rows].to(gi.dtype)[:, :, None, None]
            if need_x:
                grads['x'][rows] = gi
            del gi
        if not need_weight:
            continue
        grad_tiles = weight_backward(gw, tiles, sigma, kernels, rows, needs, grads)
        del gw, tiles, sigma
        if grad_tiles is not None:
            if shared is not None:
                total = grad_tiles.sum(0, keepdim=True)
                shared_grad = total if shared_grad is None else shared_grad.add_(total)
            else:
                spectral_backward(grad_tiles, kernels, rows, need_spec, need_kernel, grads)
            del grad_tiles
    if shared_grad is not None:
        spectral_backward(shared_grad, kernels, None, need_spec, False, grads)
    if need_spec and grads['spec'] is None:   # an empty batch
        grads['spec'] = torch.zeros(weight.spectrum.shape, device=weight.spectrum.device)
    finish_spectrum_grad(kernels, grads)
    for key, ref in (('x', x), ('spec', weight.spectrum), ('kernel', att.kernel_att), ('feat', att.local_feat),
                     ('lw', weight.local_weight), ('pos', att.pos_att), ('in', att.in_att), ('out', att.out_att)):
        if grads[key] is not None:
            grads[key] = grads[key].to(ref.dtype).view(ref.shape)
    return tuple(grads.values())


# The custom ops' boundary: a custom op's schema takes flat tensors, so the functions below keep the flat argument
# list (x … bias, then scale, stride, padding, dilation, fold, backend) and pack it into the structures at once.

def _op_forward(x: torch.Tensor, spectrum: torch.Tensor, band_index: torch.Tensor, kernel_att: Optional[torch.Tensor],
                local_feat: torch.Tensor, local_weight: torch.Tensor, pos_att: Optional[torch.Tensor],
                in_att: torch.Tensor, out_att: torch.Tensor, bias: Optional[torch.Tensor], scale: float,
                stride: List[int], padding: List[int], dilation: List[int], fold: bool,
                backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    weight = FDConvWeight(spectrum, band_index, scale, local_weight)
    att = FDConvAttention(kernel_att, local_feat, pos_att, in_att, out_att)
    _check_band_values(band_index, kernel_att)
    return _forward(x, weight, att, bias, _ConvOptions(stride, padding, dilation, fold, backend))


def _op_fake(x, spectrum, band_index, kernel_att, local_feat, local_weight, pos_att, in_att, out_att, bias, scale,
             stride, padding, dilation, fold, backend):
    weight = FDConvWeight(spectrum, band_index, scale, local_weight)
    att = FDConvAttention(kernel_att, local_feat, pos_att, in_att, out_att)
    g = _Geometry(x.shape, weight, att, _ConvOptions(stride, padding, dilation, fold, backend))
    y = x.new_empty((g.b, g.co, g.ho, g.wo), dtype=conv_dtype(x))
    return y, x.new_empty(g.saved_tiles_shape(kernel_att is None), dtype=torch.float32)


def _op_backward(grad_y: torch.Tensor, x: torch.Tensor, spectrum: torch.Tensor, band_index: torch.Tensor,
                 kernel_att: Optional[torch.Tensor], local_feat: torch.Tensor, local_weight: torch.Tensor,
                 pos_att: Optional[torch.Tensor], in_att: torch.Tensor, out_att: torch.Tensor,
                 bias: Optional[torch.Tensor], saved_tiles: torch.Tensor, scale: float, stride: List[int],
                 padding: List[int], dilation: List[int], fold: bool, backend: str,
                 needs: List[bool]) -> List[torch.Tensor]:
    """The 9 gradients of :func:`_backward`; one not needed is returned as an empty tensor."""
    weight = FDConvWeight(spectrum, band_index, scale, local_weight)
    att = FDConvAttention(kernel_att, local_feat, pos_att, in_att, out_att)
    conv = _ConvOptions(stride, padding, dilation, fold, backend)
    with torch.autocast(x.device.type, enabled=False), device_guard(x):
        grads = _backward(grad_y, x, weight, att, bias, saved_tiles, conv, needs)
    return [x.new_empty(0) if grad is None else grad for grad in grads]


def _op_backward_fake(grad_y, x, spectrum, band_index, kernel_att, local_feat, local_weight, pos_att, in_att,
                      out_att, bias, saved_tiles, scale, stride, padding, dilation, fold, backend, needs):
    inputs = (x, spectrum, kernel_att, local_feat, local_weight, pos_att, in_att, out_att, bias)
    return [torch.empty_like(t, memory_format=torch.contiguous_format) if need and t is not None else x.new_empty(0)
            for t, need in zip(inputs, needs)]


_TENSOR_INPUTS = 10  # x … bias: the differentiable inputs are 0, 1, 3–9 (band_index, 2, is not)


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:_TENSOR_INPUTS], output[1])
    ctx.args = inputs[_TENSOR_INPUTS:]  # scale, stride, padding, dilation, fold, backend
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)   # no zero gradient of the saved kernels (B·Co·Ci·k² entries)


def _autograd_backward(ctx, grad_y, _grad_tiles):
    if grad_y is None:   # the output has no gradient (not materialised as zeros)
        return (None,) * (_TENSOR_INPUTS + len(ctx.args))
    saved = ctx.saved_tensors
    n = ctx.needs_input_grad
    needs = [n[0], n[1], n[3], n[4], n[5], n[6], n[7], n[8], n[9]]
    needs = [bool(need) and saved[i] is not None for need, i in zip(needs, (0, 1, 3, 4, 5, 6, 7, 8, 9))]
    grads = _fdconv_backward_op(grad_y.contiguous(), *saved, *ctx.args, needs)
    g = [grad if need else None for grad, need in zip(grads, needs)]
    return (g[0], g[1], None, *g[2:], None, None, None, None, None, None)


_fdconv_op = register_op('mmdynconv::fdconv', _op_forward, _op_fake, _autograd_backward, _setup_context)
_fdconv_backward_op = register_op('mmdynconv::fdconv_backward', _op_backward, _op_backward_fake,
                                  reject_double_backward(OP_NAME))

_CHECKED_BANDS = {}


def _check_band_values(band_index, kernel_att):
    """band_index values must lie in [0, n): checked once per band tensor version (a device sync the first time)."""
    n = 1 if kernel_att is None else kernel_att.shape[1]
    key = (band_index.data_ptr(), band_index._version, band_index.device, tuple(band_index.shape))
    if _CHECKED_BANDS.get(key) == n:
        return
    low, high = int(band_index.min()), int(band_index.max())
    if low < 0 or high >= n:
        raise ValueError(f'{OP_NAME}: band_index values must lie in [0, n) with n = {n} (the width of kernel_att), '
                         f'got values in [{low}, {high}]')
    if len(_CHECKED_BANDS) > 4096:
        _CHECKED_BANDS.clear()
    _CHECKED_BANDS[key] = n


def check_fdconv_dynamic_conv_args(x, weight, att, bias):
    """Raise TypeError / ValueError naming the argument unless the tensor arguments of :func:`fdconv_dynamic_conv` are
    valid: ``weight`` an :class:`FDConvWeight` and ``att`` an :class:`FDConvAttention` whose tensors have the shapes
    their docstrings give (band_index's values are checked inside the op)."""
    def fail(msg):
        raise ValueError(f'{OP_NAME}: {msg}')

    check_fdconv_inputs(OP_NAME, weight=weight, att=att)
    spectrum, band_index, _, local_weight = weight
    kernel_att, _, pos_att, _, out_att = att
    named = dict(x=x, spectrum=spectrum, band_index=band_index, kernel_att=kernel_att, local_feat=att.local_feat,
                 local_weight=local_weight, pos_att=pos_att, in_att=att.in_att, out_att=out_att, bias=bias)
    for name, t in named.items():
        if t is None and name in ('kernel_att', 'pos_att', 'bias'):
            continue
        check_tensor(OP_NAME, name, t, None if name == 'band_index' else FLOAT_DTYPES)
        check_like(OP_NAME, name, t, 'x', x)
    if x.dim() != 4:
        fail(f'x must be (B, Ci, H, W), got shape {tuple(x.shape)}')
    b, ci = x.shape[:2]
    if out_att.dim() != 2 or out_att.shape[0] != b:
        fail(f'out_att must be (B, Co) with B = {b}, got shape {tuple(out_att.shape)}')
    co = out_att.shape[1]
    rows = spectrum.shape[0]
    if spectrum.dim() != 3 or spectrum.shape[-1] != 2 or rows % co:
        fail(f'spectrum must be (Co·k, ⌊Ci·k/2⌋+1, 2) with Co = {co}, got shape {tuple(spectrum.shape)}')
    k = rows // co
    expected = {'spectrum': (rows, ci * k // 2 + 1, 2), 'band_index': (rows, ci * k // 2 + 1),
                'local_feat': (b, ci), 'in_att': (b, ci)}
    if local_weight.dim() != 3 or local_weight.shape[:2] != (co * k * k, 1) or local_weight.shape[2] % 2 == 0:
        fail(f'local_weight must be (Co·k², 1, odd κ) = ({co * k * k}, 1, κ), got {tuple(local_weight.shape)}')
    if pos_att is None and k != 1:
        fail(f'pos_att is required for k = {k} > 1')
    if pos_att is not None:
        expected['pos_att'] = (b, k * k)
    if kernel_att is not None and (kernel_att.dim() != 2 or kernel_att.shape[0] != b):
        fail(f'kernel_att must be (B, n) with B = {b}, got shape {tuple(kernel_att.shape)}')
    if bias is not None:
        expected['bias'] = (co,)
    for name, shape in expected.items():
        if tuple(named[name].shape) != shape:
            fail(f'{name} must have shape {shape}, got {tuple(named[name].shape)}')
    if band_index.dtype != torch.int64:
        raise TypeError(f'{OP_NAME}: band_index must be int64, got {band_index.dtype}')
