"""FDConv's per-sample dynamic convolution (SPEC §2.1–2.2), memory-lean.

``y_b = conv(x_b, W_b) + bias`` with ``W_b = α_in ⊙ α_out ⊙ α_pos ⊙ α_local ⊙ irfft2(spectrum · scale · π_b[band])``.

What makes it lean (against :func:`~mmdynconv.ops.fdconv_reference.fdconv_reference`):

- nothing of size B·Co·Ci·k² is saved for backward: the forward keeps only its (small) inputs and x, and the
  backward rebuilds W_b once (one batched irfft2 over the B mixed spectra — one inverse FFT per sample; mixing the n
  band kernels instead would cost n ≥ B inverse FFTs and n·Co·Ci·k² memory) and derives every gradient from it;
- the dense local attention is recomputed from its 1-D conv (B·Co·Ci·k²·κ MACs) rather than stored;
- α_in / α_out are folded into W_b, or applied to the activations when that is cheaper
  (Co·Ci·k² > Ci·H·W + Co·Ho·Wo, the usual case in the deep stages);
- all samples run as one grouped convolution (groups = B); the attention gradients are reductions of
  dW ⊙ W-factors computed in place, so the backward peaks at about four B·Co·Ci·k² buffers.

The spectral work runs in fp32 (also under autocast); the convolution runs in the autocast dtype when autocast is
on, else in x's dtype.
"""
import torch
import torch.nn.functional as F

from .fdconv_spectrum import tiled_to_weight


def _pair(name, value):
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise TypeError(f'fdconv_dynamic_conv: {name} must be an int or a pair of ints, got {value!r}')
    return tuple(value)


def _conv_out(size, k, stride, padding, dilation):
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


class _Geometry:
    """Shapes and conv arguments shared by forward and backward."""

    def __init__(self, x, spectrum, out_att, stride, padding, dilation, fold):
        self.b, self.ci, self.h, self.w = x.shape
        self.co = out_att.shape[1]
        self.k = spectrum.shape[0] // self.co
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.ho = _conv_out(self.h, self.k, stride[0], padding[0], dilation[0])
        self.wo = _conv_out(self.w, self.k, stride[1], padding[1], dilation[1])
        if fold is None:
            fold = self.co * self.ci * self.k ** 2 <= self.ci * self.h * self.w + self.co * self.ho * self.wo
        self.fold = fold

    def conv_args(self):
        return list(self.stride), list(self.padding), list(self.dilation)


def _mixed_tiled(spectrum, band_index, scale, kernel_att, g):
    """irfft2 of the per-sample band-weighted spectrum: (B, Co·k, Ci·k) fp32 ((1, …) without kernel attention).

    ``scale`` here includes the factor 2 of the local attention 2·sigmoid, which is cheaper to apply to the spectrum.
    """
    coefficients = torch.view_as_complex(spectrum.float().contiguous()) * scale
    if kernel_att is None:
        coefficients = coefficients.unsqueeze(0)
    else:
        coefficients = coefficients * kernel_att.float()[:, band_index]
    return torch.fft.irfft2(coefficients, s=(g.co * g.k, g.ci * g.k))


def _local_att(local_feat, local_weight):
    """sigmoid(conv1d(feat)): (B, Co·k², Ci) fp32 (the local attention without its factor 2)."""
    logits = F.conv1d(local_feat.float().unsqueeze(1), local_weight.float(), padding=local_weight.shape[-1] // 2)
    return logits.sigmoid_()


def _as_weight(t, g):
    """View a (B, Co·k², Ci) local attention as (B, Co, Ci, k, k)."""
    return t.unflatten(1, (g.co, g.k, g.k)).permute(0, 1, 4, 2, 3)


def _channel_factor(in_att, out_att, g):
    """α_out ⊗ α_in as (B, Co, Ci, 1, 1) fp32."""
    return (out_att.float()[:, :, None] * in_att.float()[:, None, :])[..., None, None]


def _assemble(tiled, local, pos_att, in_att, out_att, g):
    """Contiguous W_b (B, Co, Ci, k, k) fp32 from the mixed tiles and the local attention."""
    weight = torch.empty(g.b, g.co, g.ci, g.k, g.k, dtype=torch.float32, device=tiled.device)
    torch.mul(tiled_to_weight(tiled, g.co, g.ci, g.k), _as_weight(local, g), out=weight)
    if pos_att is not None:
        weight.mul_(pos_att.float().view(g.b, 1, 1, g.k, g.k))
    if g.fold:
        weight.mul_(_channel_factor(in_att, out_att, g))
    return weight


def _conv_dtype(x):
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


class _FDConvFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, spectrum, kernel_att, local_feat, local_weight, pos_att, in_att, out_att, bias, band_index,
                scale, stride, padding, dilation, fold):
        g = _Geometry(x, spectrum, out_att, stride, padding, dilation, fold)
        dtype = _conv_dtype(x)
        with torch.autocast(x.device.type, enabled=False):
            weight = _assemble(_mixed_tiled(spectrum, band_index, 2 * scale, kernel_att, g),
                               _local_att(local_feat, local_weight), pos_att, in_att, out_att, g)
            weight = weight.to(dtype).view(g.b * g.co, g.ci, g.k, g.k)
            inp = x if g.fold else x * in_att.to(x.dtype)[:, :, None, None]
            y = F.conv2d(inp.to(dtype).reshape(1, g.b * g.ci, g.h, g.w), weight, None, g.stride, g.padding,
                         g.dilation, groups=g.b).view(g.b, g.co, g.ho, g.wo)
            del weight, inp
            if not g.fold:
                y.mul_(out_att.to(dtype)[:, :, None, None])
            if bias is not None:
                y.add_(bias.to(dtype)[None, :, None, None])
        ctx.save_for_backward(x, spectrum, kernel_att, local_feat, local_weight, pos_att, in_att, out_att, bias,
                              band_index)
        ctx.geometry, ctx.scale, ctx.dtype = g, 2 * scale, dtype
        return y

    @staticmethod
    def backward(ctx, grad_y):
        (x, spectrum, kernel_att, local_feat, local_weight, pos_att, in_att, out_att, bias,
         band_index) = ctx.saved_tensors
        g, scale, dtype = ctx.geometry, ctx.scale, ctx.dtype
        needs = ctx.needs_input_grad
        with torch.autocast(x.device.type, enabled=False):
            return _backward(grad_y, x, spectrum, kernel_att, local_feat, local_weight, pos_att, in_att, out_att,
                             bias, band_index, scale, g, dtype, needs)


def _conv_backward(grad, inp, weight, g, want_input, want_weight):
    stride, padding, dilation = g.conv_args()
    gi, gw, _ = torch.ops.aten.convolution_backward(
        grad.reshape(1, g.b * g.co, g.ho, g.wo), inp.reshape(1, g.b * g.ci, g.h, g.w), weight, None, stride,
        padding, dilation, False, [0, 0], g.b, [want_input, want_weight, False])
    return gi, gw


def _backward(grad_y, x, spectrum, kernel_att, local_feat, local_weight, pos_att, in_att, out_att, bias, band_index,
              scale, g, dtype, needs):
    (need_x, need_spec, need_kernel, need_feat, need_lw, need_pos, need_in, need_out, need_bias) = needs[:9]
    need_weight = any(needs[1:8])
    grad_y = grad_y.to(dtype)
    grads = dict.fromkeys(('x', 'spec', 'kernel', 'feat', 'lw', 'pos', 'in', 'out', 'bias'))
    if need_bias:
        grads['bias'] = grad_y.float().sum((0, 2, 3)).to(bias.dtype)
    if not (need_x or need_weight):
        return tuple(grads.values()) + (None,) * 6

    tiled = _mixed_tiled(spectrum, band_index, scale, kernel_att, g)           # 2·mix: (B', Co·k, Ci·k)
    local = _local_att(local_feat, local_weight)                               # σ: (B, Co·k², Ci)
    weight = _assemble(tiled, local, pos_att, in_att, out_att, g).to(dtype).view(g.b * g.co, g.ci, g.k, g.k)
    inp = (x if g.fold else x * in_att.to(x.dtype)[:, :, None, None]).to(dtype)
    grad_conv = grad_y if g.fold else grad_y * out_att.to(dtype)[:, :, None, None]
    if need_x or (need_in and not g.fold):
        gi, _ = _conv_backward(grad_conv, inp, weight, g, True, False)
        gi = gi.view(g.b, g.ci, g.h, g.w)
        if not g.fold:
            if need_in:
                grads['in'] = (gi.float() * x.float()).sum((2, 3)).to(in_att.dtype)
            gi = gi * in_att.to(gi.dtype)[:, :, None, None]
        grads['x'] = gi.to(x.dtype) if need_x else None
    if not need_weight:
        return tuple(grads.values()) + (None,) * 6

    # dW of the conv's weight; without folding, d α_out[b,o] = <W_b[o], dW_raw_b[o]> with dW_raw from grad_y.
    _, grad_w = _conv_backward(grad_y, inp, weight, g, False, True)
    del inp, grad_conv
    grad_w = grad_w.float().view(g.b, g.co, g.ci, g.k, g.k)
    if not g.fold:
        n = g.ci * g.k * g.k
        if need_out:
            grads['out'] = torch.bmm(weight.float().view(g.b * g.co, 1, n), grad_w.view(g.b * g.co, n, 1)).view(
                g.b, g.co).to(out_att.dtype)
        grad_w.mul_(out_att.float()[:, :, None, None, None])
    del weight
    tiled_w = tiled_to_weight(tiled, g.co, g.ci, g.k)                          # (B', Co, Ci, k, k) view
    local_w = _as_weight(local, g)                                             # (B, Co, Ci, k, k) view

    # Small attentions: reductions of T = dW ⊙ tiles ⊙ α_local.
    if need_pos or (g.fold and (need_in or need_out)):
        t = torch.mul(grad_w, local_w).mul_(tiled_w).view(g.b, g.co * g.ci, g.k * g.k)
        if pos_att is not None and need_pos:
            if g.fold:
                factor = _channel_factor(in_att, out_att, g).view(g.b, g.co * g.ci, 1)
                grads['pos'] = torch.bmm(t.transpose(1, 2), factor).view(g.b, -1).to(pos_att.dtype)
            else:
                grads['pos'] = t.sum(1).to(pos_att.dtype)
        if g.fold and (need_in or need_out):
            e = t.sum(-1) if pos_att is None else torch.bmm(t, pos_att.float().view(g.b, -1, 1))
            e = e.view(g.b, g.co, g.ci)
            if need_in:
                grads['in'] = torch.bmm(out_att.float().view(g.b, 1, g.co), e).view(g.b, g.ci).to(in_att.dtype)
            if need_out:
                grads['out'] = torch.bmm(e, in_att.float().view(g.b, g.ci, 1)).view(g.b, g.co).to(out_att.dtype)
        del t

    # dU = dW ⊙ α_pos (⊙ α_in ⊙ α_out when folded), in place.
    if pos_att is not None:
        grad_w.mul_(pos_att.float().view(g.b, 1, 1, g.k, g.k))
    if g.fold:
        grad_w.mul_(_channel_factor(in_att, out_att, g))

    if need_spec or need_kernel:
        grad_tiled = torch.empty(g.b, g.co * g.k, g.ci * g.k, dtype=torch.float32, device=x.device)
        torch.mul(grad_w, local_w, out=tiled_to_weight(grad_tiled, g.co, g.ci, g.k))
        if kernel_att is None:
            grad_tiled = grad_tiled.sum(0, keepdim=True)
        _spectral_backward(grad_tiled, spectrum, kernel_att, band_index, scale, need_spec, need_kernel, grads)
        del grad_tiled
    if need_feat or need_lw:
        # d logits = dU ⊙ tiles ⊙ σ(1 − σ), written into the local-attention buffer (its conv1d layout).
        local.addcmul_(local, local, value=-1)
        local_w.mul_(grad_w).mul_(tiled_w)
        gf, gw, _ = torch.ops.aten.convolution_backward(
            local, local_feat.float().unsqueeze(1), local_weight.float(), None, [1], [local_weight.shape[-1] // 2],
            [1], False, [0], 1, [need_feat, need_lw, False])
        grads['feat'] = gf.squeeze(1).to(local_feat.dtype) if need_feat else None
        grads['lw'] = gw.to(local_weight.dtype) if need_lw else None
    return tuple(grads.values()) + (None,) * 6


def _spectral_backward(grad_tiled, spectrum, kernel_att, band_index, scale, need_spec, need_kernel, grads):
    """Gradients of irfft2(spectrum · scale · π_b[band]) given d tiles (B', Co·k, Ci·k)."""
    cols = grad_tiled.shape[-1]
    # Adjoint of irfft2 (norm='backward'): rfft2 scaled by 1/(rows·cols), interior columns doubled.
    grad_c = torch.fft.rfft2(grad_tiled, norm='forward')
    doubled = cols - grad_c.shape[-1]
    if doubled > 0:
        grad_c[..., 1:1 + doubled] *= 2
    grad_c = torch.view_as_real(grad_c)                                        # (B', R, Cf, 2)
    spec = spectrum.float()
    if need_spec:
        if kernel_att is None:
            grads['spec'] = (grad_c[0] * scale).to(spectrum.dtype)
        else:
            coefficient = kernel_att.float()[:, band_index] * scale            # (B, R, Cf)
            grads['spec'] = torch.einsum('brc,brcz->rcz', coefficient, grad_c).to(spectrum.dtype)
    if need_kernel:
        per_coefficient = torch.einsum('brcz,rcz->brc', grad_c, spec).flatten(1) * scale
        grad_k = torch.zeros(kernel_att.shape, dtype=torch.float32, device=spectrum.device)
        grad_k.scatter_add_(1, band_index.flatten().expand_as(per_coefficient), per_coefficient)
        grads['kernel'] = grad_k.to(kernel_att.dtype)


def fdconv_dynamic_conv(x, spectrum, band_index, scale, kernel_att, local_feat, local_weight, pos_att, in_att,
                        out_att, bias=None, stride=1, padding=0, dilation=1, fold=None):
    """Convolve every sample with its own FDConv kernel W_b (see the module docstring), memory-lean.

    Args:
        x: (B, Ci, H, W).
        spectrum: (Co·k, ⌊Ci·k/2⌋+1, 2) FDW parameter; band_index: int64 (Co·k, ⌊Ci·k/2⌋+1) in [0, n).
        scale: α = s·n multiplying the spectrum (s = ⌊min(Ci, Co)/2⌋ clamped to ≥ 1).
        kernel_att: (B, n) kernel attention π, or None when n = 1.
        local_feat: (B, Ci) layer-normalised pooled input of the KSM local branch.
        local_weight: (Co·k², 1, κ) its 1-D conv weight (output channel o·k² + u·k + v ↔ weight entry (o, ·, u, v)).
        pos_att: (B, k²) kernel-position attention, or None when k = 1.
        in_att: (B, Ci); out_att: (B, Co) channel attentions. bias: (Co,) or None.
        stride, padding, dilation: ints or pairs. fold: None (choose by cost), True (fold α_in/α_out into W_b) or
            False (apply them to the activations).

    Returns:
        (B, Co, Ho, Wo), differentiable in every tensor argument but band_index.
    """
    stride, padding, dilation = _pair('stride', stride), _pair('padding', padding), _pair('dilation', dilation)
    _check(x, spectrum, band_index, kernel_att, local_feat, local_weight, pos_att, in_att, out_att, bias, fold)
    return _FDConvFunction.apply(x, spectrum, kernel_att, local_feat, local_weight, pos_att, in_att, out_att, bias,
                                 band_index, float(scale), stride, padding, dilation, fold)


def _check(x, spectrum, band_index, kernel_att, local_feat, local_weight, pos_att, in_att, out_att, bias, fold):
    def fail(msg):
        raise ValueError(f'fdconv_dynamic_conv: {msg}')

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
    if kernel_att is not None:
        if kernel_att.dim() != 2 or kernel_att.shape[0] != b:
            fail(f'kernel_att must be (B, n) with B = {b}, got shape {tuple(kernel_att.shape)}')
    if bias is not None:
        expected['bias'] = (co,)
    tensors = dict(spectrum=spectrum, band_index=band_index, local_feat=local_feat, in_att=in_att, pos_att=pos_att,
                   bias=bias)
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            fail(f'{name} must have shape {shape}, got {tuple(tensors[name].shape)}')
    if band_index.dtype != torch.int64:
        raise TypeError(f'fdconv_dynamic_conv: band_index must be int64, got {band_index.dtype}')
    if fold not in (None, True, False):
        raise TypeError(f'fdconv_dynamic_conv: fold must be None, True or False, got {fold!r}')
