"""FDConv's per-sample dynamic convolution (SPEC §2.1–2.2), memory-lean.

``y_b = conv(x_b, W_b) + bias`` with ``W_b = α_in ⊙ α_out ⊙ α_pos ⊙ α_local ⊙ irfft2(spectrum·scale·π_b[band])``,
α_local = 2·sigmoid(conv1d(local_feat)) dense over (Co, Ci, k, k).

What makes it lean (against :func:`~mmdynconv.ops.fdconv_reference.fdconv_reference`):

- nothing of size B·Co·Ci·k² is saved for backward: the forward keeps its small inputs and x only;
- the per-sample work runs in chunks of samples (``CHUNK_ELEMENTS`` kernel entries, at least one sample, at most
  ``MAX_CHUNKS`` chunks to bound launch overhead), so besides W (B·Co·Ci·k², what the grouped convolution needs)
  the forward allocates only chunk-sized temporaries, and the backward holds W or dW plus the mixed kernels (two
  B·Co·Ci·k² buffers) and chunk-sized temporaries;
- the dense local attention is recomputed from its 1-D conv (Co·Ci·k²·κ MACs per sample) instead of stored, and its
  factor 2 rides on the spectrum scale;
- α_in / α_out are folded into W_b, or applied to the activations when that is cheaper
  (Co·Ci·k² > Ci·H·W + Co·Ho·Wo, the usual case in the deep stages);
- all samples run as one grouped convolution (groups = B); the attention gradients are reductions of dW ⊙ W-factors
  computed in place.

The spectral mix is one inverse FFT per sample (n ≥ B band kernels mixed by a matmul would cost n inverse FFTs and
n·Co·Ci·k² memory instead). The spectral work runs in fp32 (also under autocast); the convolution runs in the
autocast dtype when autocast is on, else in x's dtype.
"""
import torch
import torch.nn.functional as F

from .fdconv_spectrum import tiled_to_weight

CHUNK_ELEMENTS = 1 << 20  # kernel entries per chunk of samples (at least one sample, at most 4 chunks)
MAX_CHUNKS = 4


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
    """Shapes, conv arguments and the per-sample chunking shared by forward and backward."""

    def __init__(self, x, spectrum, out_att, stride, padding, dilation, fold):
        self.b, self.ci, self.h, self.w = x.shape
        self.co = out_att.shape[1]
        self.k = spectrum.shape[0] // self.co
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.ho = _conv_out(self.h, self.k, stride[0], padding[0], dilation[0])
        self.wo = _conv_out(self.w, self.k, stride[1], padding[1], dilation[1])
        self.entries = self.co * self.ci * self.k * self.k
        if fold is None:
            fold = self.entries <= self.ci * self.h * self.w + self.co * self.ho * self.wo
        self.fold = fold
        step = max(1, CHUNK_ELEMENTS // self.entries, -(-self.b // MAX_CHUNKS))
        self.chunks = [slice(s, min(s + step, self.b)) for s in range(0, self.b, step)]

    def conv_args(self):
        return list(self.stride), list(self.padding), list(self.dilation)


class _Inputs:
    """The op's tensors in fp32 where small (attentions), with per-chunk helpers."""

    def __init__(self, spectrum, band_index, scale, kernel_att, local_feat, local_weight, pos_att, in_att, out_att,
                 g):
        self.g = g
        self.spectrum = torch.view_as_complex(spectrum.float().contiguous()) * scale  # scale includes α_local's 2
        self.band_index, self.scale = band_index, scale
        self.kernel_att = kernel_att.float() if kernel_att is not None else None
        self.local_feat, self.local_weight = local_feat.float().unsqueeze(1), local_weight.float()
        self.pos = pos_att.float().view(g.b, 1, 1, g.k, g.k) if pos_att is not None else None
        self.in_att, self.out_att = in_att.float(), out_att.float()

    def tiled(self, rows):
        """2 × mixed kernels irfft2(spectrum·scale·π_b[band]) of samples ``rows``: (b, Co·k, Ci·k), tiled layout;
        (1, Co·k, Ci·k) without kernel attention."""
        g = self.g
        size = (g.co * g.k, g.ci * g.k)
        if self.kernel_att is None:
            return torch.fft.irfft2(self.spectrum, s=size).unsqueeze(0)
        return torch.fft.irfft2(self.spectrum * self.kernel_att[rows][:, self.band_index], s=size)

    def local(self, rows):
        """sigmoid of the local logits of samples ``rows``: (b, Co·k², Ci)."""
        return F.conv1d(self.local_feat[rows], self.local_weight, padding=self.local_weight.shape[-1] // 2).sigmoid_()

    def channel_factor(self, rows):
        """Per-(o, i) factor folded into W: α_out ⊗ α_in (fold) as (b, Co, Ci, 1, 1), else None."""
        if not self.g.fold:
            return None
        return (self.out_att[rows, :, None] * self.in_att[rows, None, :])[..., None, None]

    def weight_factor(self, rows):
        """The small factors of W besides tiles and α_local, applied to a (b, Co, Ci, k, k) tensor in place."""
        pos = self.pos[rows] if self.pos is not None else None
        channel = self.channel_factor(rows)

        def apply(t):
            if pos is not None:
                t.mul_(pos)
            if channel is not None:
                t.mul_(channel)
            return t
        return apply


def _as_weight(t, g):
    """View a (b, Co·k², Ci) local attention as (b, Co, Ci, k, k)."""
    return t.unflatten(1, (g.co, g.k, g.k)).permute(0, 1, 4, 2, 3)


def _tiles(t, g):
    """View (b, Co·k, Ci·k) tiles as (b, Co, Ci, k, k)."""
    return tiled_to_weight(t, g.co, g.ci, g.k)


def _build_weight(inputs, dtype, keep_tiles):
    """W (B·Co, Ci, k, k) in ``dtype``, chunk by chunk; with ``keep_tiles`` also the tiles of every chunk (a list)."""
    g = inputs.g
    weight = torch.empty(g.b, g.co, g.ci, g.k, g.k, dtype=dtype, device=inputs.spectrum.device)
    shared = inputs.tiled(slice(None)) if inputs.kernel_att is None else None
    tiles = []
    for rows in g.chunks:
        tiled = shared if shared is not None else inputs.tiled(rows)
        direct = dtype == torch.float32
        chunk = weight[rows] if direct else torch.empty(weight[rows].shape, device=weight.device)
        torch.mul(_tiles(tiled, g), _as_weight(inputs.local(rows), g), out=chunk)
        inputs.weight_factor(rows)(chunk)
        if not direct:
            weight[rows].copy_(chunk)
        if keep_tiles:
            tiles.append(tiled)
        del tiled, chunk
    return weight.view(g.b * g.co, g.ci, g.k, g.k), tiles


def _conv_dtype(x):
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


def _conv_input(x, in_att, g, dtype):
    inp = x if g.fold else x * in_att.to(x.dtype)[:, :, None, None]
    return inp.to(dtype).reshape(1, g.b * g.ci, g.h, g.w)


class _FDConvFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, spectrum, kernel_att, local_feat, local_weight, pos_att, in_att, out_att, bias, band_index,
                scale, stride, padding, dilation, fold):
        g = _Geometry(x, spectrum, out_att, stride, padding, dilation, fold)
        dtype = _conv_dtype(x)
        with torch.autocast(x.device.type, enabled=False):
            inputs = _Inputs(spectrum, band_index, 2 * scale, kernel_att, local_feat, local_weight, pos_att, in_att,
                             out_att, g)
            weight, _ = _build_weight(inputs, dtype, keep_tiles=False)
            y = F.conv2d(_conv_input(x, in_att, g, dtype), weight, None, g.stride, g.padding, g.dilation,
                         groups=g.b).view(g.b, g.co, g.ho, g.wo)
            del weight
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
        saved = ctx.saved_tensors
        with torch.autocast(saved[0].device.type, enabled=False):
            grads = _backward(grad_y, *saved, ctx.scale, ctx.geometry, ctx.dtype, ctx.needs_input_grad)
        return grads + (None,) * 6


def _backward(grad_y, x, spectrum, kernel_att, local_feat, local_weight, pos_att, in_att, out_att, bias, band_index,
              scale, g, dtype, needs):
    need_x, need_spec, need_kernel, need_feat, need_lw, need_pos, need_in, need_out, need_bias = needs[:9]
    grads = dict.fromkeys(('x', 'spec', 'kernel', 'feat', 'lw', 'pos', 'in', 'out', 'bias'))
    grad_y = grad_y.to(dtype)
    if need_bias:
        grads['bias'] = grad_y.float().sum((0, 2, 3)).to(bias.dtype)
    need_weight = any(needs[1:8])
    if not (need_x or need_weight):
        return tuple(grads.values())
    inputs = _Inputs(spectrum, band_index, scale, kernel_att, local_feat, local_weight, pos_att, in_att, out_att, g)
    weight, tiles = _build_weight(inputs, dtype, keep_tiles=need_weight)
    inp = _conv_input(x, in_att, g, dtype)
    stride, padding, dilation = g.conv_args()
    if need_x or (need_in and not g.fold):
        grad_conv = grad_y if g.fold else grad_y * out_att.to(dtype)[:, :, None, None]
        gi = torch.ops.aten.convolution_backward(
            grad_conv.reshape(1, g.b * g.co, g.ho, g.wo), inp, weight, None, stride, padding, dilation, False,
            [0, 0], g.b, [True, False, False])[0].view(g.b, g.ci, g.h, g.w)
        del grad_conv
        if not g.fold:
            if need_in:
                grads['in'] = (gi.float() * x.float()).sum((2, 3)).to(in_att.dtype)
            gi = gi * in_att.to(gi.dtype)[:, :, None, None]
        grads['x'] = gi.to(x.dtype) if need_x else None
        del gi
    if not need_weight:
        return tuple(grads.values())
    shape = weight.shape
    del weight
    # dW of the conv weight; without folding this is the gradient before the factor α_out (dW_raw).
    grad_w = torch.ops.aten.convolution_backward(
        grad_y.reshape(1, g.b * g.co, g.ho, g.wo), inp, grad_y.new_empty(1).expand(shape), None, stride, padding,
        dilation, False, [0, 0], g.b, [False, True, False])[1].view(g.b, g.co, g.ci, g.k, g.k)
    del inp
    _weight_backward(grad_w, tiles, inputs, needs, grads)
    for key, ref in (('spec', spectrum), ('kernel', kernel_att), ('feat', local_feat), ('lw', local_weight),
                     ('pos', pos_att), ('in', in_att), ('out', out_att)):
        if grads[key] is not None:
            grads[key] = grads[key].to(ref.dtype)
    return tuple(grads.values())


def _weight_backward(grad_w, tiles, inputs, needs, grads):
    """Gradients of W's ingredients from dW (B, Co, Ci, k, k), chunk by chunk; fills ``grads`` (fp32)."""
    g = inputs.g
    _, need_spec, need_kernel, need_feat, need_lw, need_pos, need_in, need_out = needs[:8]
    need_small = need_pos or (need_in and g.fold) or need_out
    need_logits, need_spectral = need_feat or need_lw, need_spec or need_kernel
    device = grad_w.device
    if need_pos and inputs.pos is not None:
        grads['pos'] = torch.empty(g.b, g.k * g.k, device=device)
    if need_in and g.fold:
        grads['in'] = torch.empty(g.b, g.ci, device=device)
    if need_out:
        grads['out'] = torch.empty(g.b, g.co, device=device)
    if need_feat:
        grads['feat'] = torch.empty(g.b, g.ci, device=device)
    if need_lw:
        grads['lw'] = torch.zeros_like(inputs.local_weight)
    if need_spec:
        grads['spec'] = torch.zeros(*inputs.spectrum.shape, 2, device=device)
    if need_kernel:
        grads['kernel'] = torch.zeros_like(inputs.kernel_att)
    shared_grad_tiles = None
    for index, rows in enumerate(g.chunks):
        tiled, tiles[index] = tiles[index], None                              # freed chunk by chunk
        grad = grad_w[rows]                                                   # dW chunk, becomes dU in place
        tiles_w = _tiles(tiled, g)
        local = inputs.local(rows)                                            # σ: (b, Co·k², Ci)
        if need_small:
            _small_attention_grads(grad, tiles_w, local, inputs, rows, grads)
        inputs.weight_factor(rows)(grad)
        if not g.fold:
            grad.mul_(inputs.out_att[rows, :, None, None, None])
        if need_logits:
            tiles_grad = torch.mul(tiles_w, grad)
        if need_spectral:
            grad.mul_(_as_weight(local, g))                                   # d(2·mixed tiles), W layout
        if need_logits:
            local.addcmul_(local, local, value=-1)                            # σ(1 − σ)
            _as_weight(local, g).mul_(tiles_grad)                              # d logits, conv1d layout
            del tiles_grad
            gf, gl, _ = torch.ops.aten.convolution_backward(
                local, inputs.local_feat[rows], inputs.local_weight, None, [1], [inputs.local_weight.shape[-1] // 2],
                [1], False, [0], 1, [need_feat, need_lw, False])
            if need_feat:
                grads['feat'][rows] = gf.squeeze(1)
            if need_lw:
                grads['lw'] += gl
        del local
        if need_spectral:
            grad_tiles = grad.transpose(2, 3).reshape(grad.shape[0], g.co * g.k, g.ci * g.k)
            if inputs.kernel_att is None:
                total = grad_tiles.sum(0, keepdim=True)
                shared_grad_tiles = total if shared_grad_tiles is None else shared_grad_tiles.add_(total)
            else:
                _spectral_backward(grad_tiles, inputs, rows, need_spec, need_kernel, grads)
    if shared_grad_tiles is not None:
        _spectral_backward(shared_grad_tiles, inputs, None, need_spec, False, grads)


def _small_attention_grads(grad, tiles_w, local, inputs, rows, grads):
    """d α_pos, d α_in (folded), d α_out from T = dW ⊙ tiles ⊙ σ, laid out (b, Co, k², Ci)."""
    g = inputs.g
    b = grad.shape[0]
    t = torch.empty_like(local)
    t_w = _as_weight(t, g)
    torch.mul(_as_weight(local, g), grad, out=t_w)
    t_w.mul_(tiles_w)
    t = t.view(b, g.co, g.k * g.k, g.ci)
    out_att, in_att = inputs.out_att[rows], inputs.in_att[rows]
    if inputs.pos is not None and 'pos' in grads and grads['pos'] is not None:
        # d pos[b,u] = Σ_{o,i} T·α_out[o]·(α_in[i] if folded)
        s = torch.bmm(t.view(b, -1, g.ci), in_att[:, :, None]).view(b, g.co, -1) if g.fold else t.sum(-1)
        grads['pos'][rows] = torch.bmm(out_att[:, None, :], s).view(b, -1)
    if grads['out'] is not None or grads['in'] is not None:
        # e[b,o,i] = Σ_u T·pos[u]; folded: d in = Σ_o e·α_out, d out = Σ_i e·α_in; else d out = Σ_i e
        if inputs.pos is None:
            e = t.view(b, g.co, g.ci)
        else:
            e = torch.matmul(inputs.pos[rows].view(b, 1, 1, -1), t).view(b, g.co, g.ci)
        if g.fold:
            if grads['in'] is not None:
                grads['in'][rows] = torch.bmm(out_att[:, None, :], e).view(b, g.ci)
            if grads['out'] is not None:
                grads['out'][rows] = torch.bmm(e, in_att[:, :, None]).view(b, g.co)
        elif grads['out'] is not None:
            grads['out'][rows] = e.sum(-1)


def _spectral_backward(grad_tiles, inputs, rows, need_spec, need_kernel, grads):
    """Gradients of irfft2(spectrum·scale·π_b[band]) from d tiles (b, Co·k, Ci·k); ``rows`` None = no π."""
    cols = grad_tiles.shape[-1]
    # Adjoint of irfft2 (norm='backward'): rfft2 scaled by 1/(rows·cols), interior columns doubled.
    grad_c = torch.fft.rfft2(grad_tiles, norm='forward')
    doubled = cols - grad_c.shape[-1]
    if doubled > 0:
        grad_c[..., 1:1 + doubled] *= 2
    scale = inputs.scale
    if rows is None:
        if need_spec:
            grads['spec'] += torch.view_as_real(grad_c[0]) * scale
        return
    kernel_att = inputs.kernel_att[rows]
    if need_spec:  # d spectrum = Σ_b conj-free product with the real coefficient scale·π_b[band]
        coefficient = kernel_att[:, inputs.band_index] * scale
        grads['spec'] += torch.view_as_real((grad_c * coefficient).sum(0))
    if need_kernel:  # d π_b[j] = scale · Σ_{band j} Re(dS · conj(spectrum / scale))
        per_coefficient = (grad_c * inputs.spectrum.conj()).real.flatten(1)
        grad_k = torch.zeros_like(kernel_att)
        grad_k.index_add_(1, inputs.band_index.flatten(), per_coefficient)
        grads['kernel'][rows] = grad_k


def fdconv_dynamic_conv(x, spectrum, band_index, scale, kernel_att, local_feat, local_weight, pos_att, in_att,
                        out_att, bias=None, stride=1, padding=0, dilation=1, fold=None):
    """Convolve every sample with its own FDConv kernel W_b (see the module docstring), memory-lean.

    Args:
        x: (B, Ci, H, W).
        spectrum: (Co·k, ⌊Ci·k/2⌋+1, 2) FDW parameter; band_index: int64 (Co·k, ⌊Ci·k/2⌋+1) in [0, n).
        scale: α = s·n multiplying the spectrum (s = ⌊min(Ci, Co)/2⌋ clamped to ≥ 1).
        kernel_att: (B, n) kernel attention π, or None when n = 1.
        local_feat: (B, Ci) layer-normalised pooled input of the KSM local branch.
        local_weight: (Co·k², 1, κ) its 1-D conv weight (output channel o·k² + u·k + v ↔ entry (o, ·, u, v)).
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
    if kernel_att is not None and (kernel_att.dim() != 2 or kernel_att.shape[0] != b):
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
