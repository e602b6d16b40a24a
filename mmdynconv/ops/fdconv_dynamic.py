"""FDConv's per-sample dynamic convolution (SPEC §2.1–2.2), memory-lean.

``y_b = conv(x_b, W_b) + bias`` with ``W_b = α_in ⊙ α_out ⊙ α_pos ⊙ α_local ⊙ irfft2(spectrum·scale·π_b[band])``,
α_local = 2·sigmoid(conv1d(local_feat)) dense over (Co, Ci, k, k).

What makes it lean and fast (against :func:`~mmdynconv.ops.fdconv_reference.fdconv_reference`):

- everything per sample runs in chunks of samples (``CHUNK_ELEMENTS`` kernel entries, at least one sample, at most
  ``MAX_CHUNKS`` chunks), the grouped convolution included: the forward never holds more than a chunk's W, the
  backward rebuilds W, takes dx and dW and reduces dW into the attention and spectrum gradients chunk by chunk;
- the only B·Co·Ci·k² tensor that may be saved for backward is the mixed kernel irfft2(spectrum·π_b), and only when
  B·Co·Ci·k² ≤ ``SAVE_TILES_ELEMENTS`` (it costs an inverse FFT per sample to recompute); above that it is
  recomputed. The dense local attention is always recomputed from its 1-D conv (a GEMM of depth κ);
- all per-entry work runs in one memory layout, (Co, k, k, Ci) per sample: the layout of the local logits and a
  channels-last conv weight, so every elementwise pass is contiguous (the (Co, Ci, k, k) ↔ tiled (Co·k, Ci·k)
  permutations run at a fraction of memory speed on CPU). Only the FFT input/output is transposed, once per pass;
- α_in / α_out are folded into W_b, or applied to the activations when that is cheaper
  (Co·Ci·k² > Ci·H·W + Co·Ho·Wo, the usual case in the deep stages); the attention gradients are reductions of
  dW ⊙ W-factors (batched GEMMs);
- the spectral mix gathers π_b[band] with ``index_select`` (not advanced indexing); FFT normalisation, the factor 2
  of α_local and the Hermitian doubling of the adjoint ride on scalars / per-column constants applied once, and the
  spectrum and π gradients take one pass each over rfft2(d tiles);
- 1×1 kernels without padding run as batched matmuls (stride by subsampling), others as one convolution with
  groups = samples per chunk;
- on CPU every large temporary is a fresh allocation (page faults), so in-place updates are used where possible;
- with the Triton backend (CUDA by default, see :mod:`.backend`) the per-entry passes — local logits, sigmoid, the
  products that make W, and their gradients — are fused kernels (:mod:`.fdconv_triton`) that read the mixed kernels
  and dW in place and write d tiles in the FFT's layout; the torch code here is their reference.

The spectral mix is one inverse FFT per sample (n ≥ B band kernels mixed by a matmul would cost n inverse FFTs and
n·Co·Ci·k² memory instead). The spectral work runs in fp32 (also under autocast); the convolution runs in the
autocast dtype when autocast is on, else in x's dtype.
"""
import torch
import torch.nn.functional as F

from .backend import resolve_backend
from .per_sample_conv import (ConvShape, conv_dtype, per_sample_conv_backward, per_sample_conv_forward,
                              sample_chunks)

CHUNK_ELEMENTS = 1 << 17       # kernel entries per chunk (512 KiB fp32; at least one sample, at most MAX_CHUNKS chunks)
MAX_CHUNKS = 4
SAVE_TILES_ELEMENTS = 1 << 24  # save the mixed kernels for backward up to this many B·Co·Ci·k² entries (64 MiB)


def _pair(name, value):
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise TypeError(f'fdconv_dynamic_conv: {name} must be an int or a pair of ints, got {value!r}')
    return tuple(value)


class _Geometry(ConvShape):
    """:class:`~.per_sample_conv.ConvShape` plus FDConv's square k, the per-sample chunking, the α_in/α_out folding and
    the save/recompute choice shared by forward and backward."""

    def __init__(self, x, spectrum, out_att, stride, padding, dilation, fold):
        co = out_att.shape[1]
        self.k = spectrum.shape[0] // co
        super().__init__(x.shape, co, (self.k, self.k), stride, padding, dilation)
        if fold is None:
            fold = self.entries <= self.ci * self.h * self.w + self.co * self.ho * self.wo
        self.fold = fold
        self.chunks = sample_chunks(self.b, self.entries, CHUNK_ELEMENTS, MAX_CHUNKS)
        self.save_tiles = self.b * self.entries <= SAVE_TILES_ELEMENTS


class _Kernels:
    """The op's small inputs in fp32 and the per-chunk pieces of W in the (b, Co, k, k, Ci) layout."""

    def __init__(self, spectrum, band_index, scale, kernel_att, local_feat, local_weight, pos_att, in_att, out_att,
                 g, triton):
        self.g = g
        self.triton = triton
        rows, cols = g.co * g.k, g.ci * g.k
        self.size = (rows, cols)
        half = spectrum.shape[1]
        self.spectrum = torch.view_as_complex(spectrum.float().contiguous())   # S: (rows, half) complex
        # irfft2 runs with norm='forward'; 1/(rows·cols) and the 2 of α_local ride on the spectrum scale
        self.forward_scale = scale / (rows * cols)
        # adjoint of irfft2: unnormalised rfft2 · 1/(rows·cols), interior columns doubled; (half,) per column
        doubled = torch.ones(half, device=spectrum.device)
        doubled[1:1 + cols - half] = 2
        self.adjoint_scale = doubled * self.forward_scale
        self.band = band_index.flatten()
        self.scaled_conj = None                                            # adjoint_scale·conj(S), made by backward
        self.kernel_att = kernel_att.float() if kernel_att is not None else None
        kappa = local_weight.shape[-1]
        self.local_feat = local_feat.float().unsqueeze(1)                  # (B, 1, Ci)
        self.features = F.pad(self.local_feat, (kappa // 2, kappa // 2)).unfold(2, kappa, 1)[:, 0].contiguous()
        self.local_weight = local_weight.float()                           # (Co·k², 1, κ)
        self.pos = pos_att.float().view(g.b, 1, g.k, g.k, 1) if pos_att is not None else None
        self.in_att, self.out_att = in_att.float(), out_att.float()

    def coefficients(self, rows, scale=1.0):
        """scale·π_b[band] of samples ``rows``: real (b, rows, half)."""
        att = self.kernel_att[rows] * scale
        return att.index_select(1, self.band).view(att.shape[0], *self.spectrum.shape)

    def tiles(self, rows):
        """Mixed kernels 2·irfft2(spectrum·scale·π_b[band]) of samples ``rows`` in the (b, Co, k, k, Ci) layout;
        (1, Co, k, k, Ci) without kernel attention."""
        g = self.g
        if self.kernel_att is None:
            spec = (self.spectrum * self.forward_scale)[None]
        else:
            spec = self.spectrum * self.coefficients(rows, self.forward_scale)
        tiled = torch.fft.irfft2(spec, s=self.size, norm='forward')
        del spec
        tiles = tiled.view(-1, g.co, g.k, g.ci, g.k).transpose(3, 4)
        return tiles if self.triton else tiles.contiguous()   # the Triton kernels read the tiled layout in place

    def sigma(self, rows):
        """sigmoid of the local logits of samples ``rows``: (b, Co, k, k, Ci)."""
        g = self.g
        features = self.features[rows]
        weight = self.local_weight.view(-1, features.shape[-1]).expand(features.shape[0], -1, -1)
        logits = torch.bmm(weight, features.transpose(1, 2))
        return logits.sigmoid_().view(-1, g.co, g.k, g.k, g.ci)

    def pos_rows(self, rows):
        """α_pos of samples ``rows`` as (b, k²), or None."""
        return self.pos[rows].view(-1, self.g.k * self.g.k) if self.pos is not None else None

    def row_factor(self, rows, with_out):
        """α_pos ⊗ α_out (α_out when ``with_out``) as (b, Co or 1, k, k, 1), or None."""
        g = self.g
        factor = self.pos[rows] if self.pos is not None else None
        if with_out:
            out = self.out_att[rows].view(-1, g.co, 1, 1, 1)
            factor = out if factor is None else factor * out
        return factor

    def sigma_or_none(self, rows):
        """:meth:`sigma` for the torch path; None for the Triton kernels, which compute it in registers."""
        return None if self.triton else self.sigma(rows)

    def weight(self, tiles, sigma, rows, dtype, in_place=False):
        """The conv weight of samples ``rows`` in the (b, Co, k, k, Ci) layout, in ``dtype``."""
        g = self.g
        if self.triton:
            from .fdconv_triton import assemble_weight_triton
            return assemble_weight_triton(tiles, self.local_weight, self.local_feat[rows, 0], self.pos_rows(rows),
                                          self.out_att[rows], self.in_att[rows], g.fold, dtype)
        w = sigma.mul_(tiles) if in_place else torch.mul(tiles, sigma)
        factor = self.row_factor(rows, g.fold)
        if factor is not None:
            w.mul_(factor)
        if g.fold:
            w.mul_(self.in_att[rows].view(-1, 1, 1, 1, g.ci))
        return w.to(dtype)


def _conv_input(x, in_att, g, dtype):
    inp = x if g.fold else x * in_att.to(x.dtype)[:, :, None, None]
    return inp.to(dtype)


class _FDConvFunction(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, spectrum, kernel_att, local_feat, local_weight, pos_att, in_att, out_att, bias, band_index,
                scale, stride, padding, dilation, fold, triton):
        g = _Geometry(x, spectrum, out_att, stride, padding, dilation, fold)
        dtype = conv_dtype(x)
        saved_tiles = []
        with torch.autocast(x.device.type, enabled=False):
            kernels = _Kernels(spectrum, band_index, 2 * scale, kernel_att, local_feat, local_weight, pos_att, in_att,
                               out_att, g, triton)
            inp = _conv_input(x, in_att, g, dtype)
            shared = kernels.tiles(slice(None)) if kernel_att is None else None
            outputs = []
            for rows in g.chunks:
                tiles = shared if shared is not None else kernels.tiles(rows)
                weight = kernels.weight(tiles, kernels.sigma_or_none(rows), rows, dtype, in_place=True)
                outputs.append(per_sample_conv_forward(inp, weight, rows, g))
                if g.save_tiles and shared is None:
                    saved_tiles.append(tiles)
                del weight, tiles
            del inp
            y = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
            del outputs
            if not g.fold:
                y.mul_(out_att.to(dtype)[:, :, None, None])
            if bias is not None:
                y.add_(bias.to(dtype)[None, :, None, None])
        ctx.save_for_backward(x, spectrum, kernel_att, local_feat, local_weight, pos_att, in_att, out_att, bias,
                              band_index)
        ctx.geometry, ctx.scale, ctx.dtype, ctx.triton = g, 2 * scale, dtype, triton
        ctx.tiles = [shared] if shared is not None else (saved_tiles if g.save_tiles else None)
        return y

    @staticmethod
    def backward(ctx, grad_y):
        saved = ctx.saved_tensors
        tiles, ctx.tiles = ctx.tiles, None
        with torch.autocast(saved[0].device.type, enabled=False):
            grads = _backward(grad_y, *saved, ctx.scale, ctx.geometry, ctx.dtype, ctx.needs_input_grad, tiles,
                              ctx.triton)
        return grads + (None,) * 7


def _backward(grad_y, x, spectrum, kernel_att, local_feat, local_weight, pos_att, in_att, out_att, bias, band_index,
              scale, g, dtype, needs, saved_tiles, triton):
    need_x, need_spec, need_kernel, need_feat, need_lw, need_pos, need_in, need_out, need_bias = needs[:9]
    grads = dict.fromkeys(('x', 'spec', 'kernel', 'feat', 'lw', 'pos', 'in', 'out', 'bias'))
    grad_y = grad_y.to(dtype)
    if need_bias:
        grads['bias'] = grad_y.float().sum((0, 2, 3)).to(bias.dtype)
    need_weight = any(needs[1:8])
    need_input = need_x or (need_in and not g.fold)
    if not (need_input or need_weight):
        return tuple(grads.values())
    kernels = _Kernels(spectrum, band_index, scale, kernel_att, local_feat, local_weight, pos_att, in_att, out_att, g,
                       triton)
    inp = _conv_input(x, in_att, g, dtype)
    grad_conv = grad_y if g.fold else grad_y * out_att.to(dtype)[:, :, None, None]
    device = x.device
    if need_x:
        grads['x'] = torch.empty_like(x)
    if need_in and not g.fold:
        grads['in'] = torch.empty(g.b, g.ci, device=device)
    _allocate_weight_grads(kernels, needs, grads)
    shared = None
    if kernel_att is None:  # one kernel for all samples (saved by the forward unless a retained graph reran)
        shared = saved_tiles[0] if saved_tiles is not None else kernels.tiles(slice(None))
    shared_grad = None
    for index, rows in enumerate(g.chunks):
        if shared is not None:
            tiles = shared
        elif saved_tiles is not None:
            tiles, saved_tiles[index] = saved_tiles[index], None           # freed chunk by chunk
        else:
            tiles = kernels.tiles(rows)
        sigma = kernels.sigma_or_none(rows)
        # dW from the raw grad_y when α_out is applied to activations (it is a factor of dW's reductions below)
        weight = kernels.weight(tiles, sigma, rows, dtype) if need_input else None
        grad_rows = grad_y[rows]
        grad_conv_rows = grad_rows if g.fold else grad_conv[rows]
        gi, gw = per_sample_conv_backward(inp, rows, weight, grad_conv_rows if need_input else None,
                                grad_rows if need_weight else None, g)
        del weight
        if gi is not None:
            if not g.fold:
                if need_in:
                    grads['in'][rows] = (gi.float() * x[rows].float()).sum((2, 3))
                gi = gi * in_att[rows].to(gi.dtype)[:, :, None, None]
            if need_x:
                grads['x'][rows] = gi
            del gi
        if not need_weight:
            continue
        grad_tiles = _weight_backward(gw, tiles, sigma, kernels, rows, needs, grads)
        del gw, tiles, sigma
        if grad_tiles is not None:
            if shared is not None:
                total = grad_tiles.sum(0, keepdim=True)
                shared_grad = total if shared_grad is None else shared_grad.add_(total)
            else:
                _spectral_backward(grad_tiles, kernels, rows, need_spec, need_kernel, grads)
            del grad_tiles
    if shared_grad is not None:
        _spectral_backward(shared_grad, kernels, None, need_spec, False, grads)
    _finish_spectrum_grad(kernels, grads)
    for key, ref in (('x', x), ('spec', spectrum), ('kernel', kernel_att), ('feat', local_feat), ('lw', local_weight),
                     ('pos', pos_att), ('in', in_att), ('out', out_att)):
        if grads[key] is not None:
            grads[key] = grads[key].to(ref.dtype).view(ref.shape)
    return tuple(grads.values())


def _allocate_weight_grads(kernels, needs, grads):
    g = kernels.g
    _, need_spec, need_kernel, need_feat, need_lw, need_pos, need_in, need_out = needs[:8]
    device = kernels.in_att.device
    if need_pos and kernels.pos is not None:
        grads['pos'] = torch.empty(g.b, g.k * g.k, device=device)
    if need_in and g.fold:
        grads['in'] = torch.empty(g.b, g.ci, device=device)
    if need_out:
        grads['out'] = torch.empty(g.b, g.co, device=device)
    if need_feat:
        grads['feat'] = torch.empty(g.b, g.ci, device=device)
    if need_lw:
        grads['lw'] = torch.zeros_like(kernels.local_weight)
    if need_kernel:
        grads['kernel'] = torch.zeros_like(kernels.kernel_att)


def _weight_backward(grad, tiles, sigma, kernels, rows, needs, grads):
    """Gradients of W's ingredients from dW (b, Co, k, k, Ci) of samples ``rows``; fills ``grads`` (fp32) and returns
    d tiles (b, Co, k, k, Ci) fp32 when the spectral gradients are needed, else None.

    ``grad`` is dW of the conv weight (any strides, the conv dtype); without folding it is taken before the factor
    α_out. ``sigma`` is None with the Triton kernels.
    """
    g = kernels.g
    _, need_spec, need_kernel, need_feat, need_lw, need_pos, need_in, need_out = needs[:8]
    need_small = (need_pos and kernels.pos is not None) or (need_in and g.fold) or need_out
    need_tiles, need_logits = need_spec or need_kernel, need_feat or need_lw
    if kernels.triton:
        from .fdconv_triton import assemble_weight_backward_triton
        q, grad_tiles, logits = assemble_weight_backward_triton(
            grad, tiles, kernels.local_weight, kernels.local_feat[rows, 0], kernels.pos_rows(rows),
            kernels.out_att[rows], kernels.in_att[rows], g.fold, need_small, need_tiles, need_logits)
        if q is not None:
            _small_attention_grads(q, kernels, rows, grads)
            del q
    else:
        grad_tiles, logits = _weight_backward_torch(grad.float().contiguous(), tiles, sigma, kernels, rows,
                                                    need_small, need_tiles, need_logits, grads)
    if logits is not None:
        logits = logits.view(logits.shape[0], -1, g.ci)                    # (b, Co·k², Ci)
        gf, gl, _ = torch.ops.aten.convolution_backward(
            logits, kernels.local_feat[rows], kernels.local_weight, None, [1], [kernels.local_weight.shape[-1] // 2],
            [1], False, [0], 1, [need_feat, need_lw, False])
        if need_feat:
            grads['feat'][rows] = gf.squeeze(1)
        if need_lw:
            grads['lw'] += gl
        del logits
    return grad_tiles


def _weight_backward_torch(grad, tiles, sigma, kernels, rows, need_small, need_tiles, need_logits, grads):
    """The reference of the fused backward kernel: (d tiles or None, d local logits or None); ``grad`` is
    overwritten."""
    g = kernels.g
    if need_small:
        q = torch.mul(grad, tiles)
        _small_attention_grads(q.mul_(sigma), kernels, rows, grads)
        del q
    if not (need_tiles or need_logits):
        return None, None
    grad.mul_(kernels.row_factor(rows, True))                             # α_pos ⊗ α_out (both folded or not)
    if g.fold:
        grad.mul_(kernels.in_att[rows].view(-1, 1, 1, 1, g.ci))
    grad_tiles = grad.mul_(sigma)                                         # d tiles (the 2 of α_local is in tiles)
    logits = None
    if need_logits:
        logits = torch.mul(grad_tiles, tiles)
        logits.addcmul_(logits, sigma, value=-1)                          # · σ(1 − σ): d logits
    return (grad_tiles if need_tiles else None), logits


def _small_attention_grads(q, kernels, rows, grads):
    """d α_pos, d α_in (folded), d α_out from Q = dW ⊙ tiles ⊙ σ, (b, Co, k, k, Ci)."""
    g = kernels.g
    b = q.shape[0]
    q = q.view(b, g.co, g.k * g.k, g.ci)
    out_att, in_att = kernels.out_att[rows], kernels.in_att[rows]
    if kernels.pos is not None and grads['pos'] is not None:
        # d pos[u] = Σ_{o,i} Q·α_out[o]·(α_in[i] if folded)
        s = torch.bmm(q.view(b, -1, g.ci), in_att[:, :, None]).view(b, g.co, -1) if g.fold else q.sum(-1)
        grads['pos'][rows] = torch.bmm(out_att[:, None, :], s).view(b, -1)
    if grads['out'] is not None or (g.fold and grads['in'] is not None):
        # e[b,o,i] = Σ_u Q·pos[u]; folded: d in = Σ_o e·α_out, d out = Σ_i e·α_in; else d out = Σ_i e
        if kernels.pos is None:
            e = q.view(b, g.co, g.ci)
        else:
            e = torch.matmul(kernels.pos[rows].view(b, 1, 1, -1), q).view(b, g.co, g.ci)
        if g.fold:
            if grads['in'] is not None:
                grads['in'][rows] = torch.bmm(out_att[:, None, :], e).view(b, g.ci)
            if grads['out'] is not None:
                grads['out'][rows] = torch.bmm(e, in_att[:, :, None]).view(b, g.co)
        elif grads['out'] is not None:
            grads['out'][rows] = e.sum(-1)


def _spectral_backward(grad_tiles, kernels, rows, need_spec, need_kernel, grads):
    """Gradients of the spectrum and π from d tiles (b, Co, k, k, Ci); ``rows`` None = no π (shared tiles).

    With Y_b = rfft2(d tiles_b) (unnormalised) and a = ``adjoint_scale``, d mixed spectrum_b = a·Y_b. ``grads['spec']``
    accumulates Σ_b Y_b·π_b[band] without a (applied once by :func:`_finish_spectrum_grad`); d π_b[j] = Σ_{band j}
    Re(Y_b · a·conj(spectrum)) with a·conj(spectrum) made once per backward. Every pass over Y is a single one.
    """
    b = grad_tiles.shape[0]
    tiled = grad_tiles.transpose(3, 4).reshape(b, *kernels.size)
    spec = torch.fft.rfft2(tiled)                                         # (b, rows, half)
    del tiled
    if rows is None:
        if need_spec:
            _accumulate(grads, torch.view_as_real(spec[0]))
        return
    if need_spec:
        coefficient = kernels.coefficients(rows).unsqueeze(-1)
        for sample in range(b):
            _accumulate(grads, torch.view_as_real(spec[sample]), coefficient[sample])
        del coefficient
    if need_kernel:
        if kernels.scaled_conj is None:  # a·conj(S) = view of (re·a, −im·a), one real pass
            a = kernels.adjoint_scale
            conj = torch.view_as_real(kernels.spectrum) * torch.stack([a, -a], -1)
            kernels.scaled_conj = torch.view_as_complex(conj)
        per_coefficient = spec.mul_(kernels.scaled_conj).real.reshape(b, -1)
        grad_k = torch.zeros_like(kernels.kernel_att[rows])
        grad_k.index_add_(1, kernels.band, per_coefficient)
        grads['kernel'][rows] = grad_k


def _accumulate(grads, term, factor=None):
    """grads['spec'] += term (· factor), allocated by the first term."""
    if grads['spec'] is None:
        grads['spec'] = term.clone() if factor is None else term * factor
    elif factor is None:
        grads['spec'].add_(term)
    else:
        grads['spec'].addcmul_(term, factor)


def _finish_spectrum_grad(kernels, grads):
    if grads['spec'] is not None:
        grads['spec'].mul_(kernels.adjoint_scale[:, None])


def fdconv_dynamic_conv(x, spectrum, band_index, scale, kernel_att, local_feat, local_weight, pos_att, in_att,
                        out_att, bias=None, stride=1, padding=0, dilation=1, fold=None, backend=None):
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
        backend: None (automatic: Triton on CUDA when available, see :mod:`.backend` and ``MMDYNCONV_BACKEND``),
            'reference' (the torch code of this module) or 'triton' (fused kernels for the per-entry work).

    Returns:
        (B, Co, Ho, Wo), differentiable in every tensor argument but band_index.
    """
    stride, padding, dilation = _pair('stride', stride), _pair('padding', padding), _pair('dilation', dilation)
    _check(x, spectrum, band_index, kernel_att, local_feat, local_weight, pos_att, in_att, out_att, bias, fold)
    triton = resolve_backend(backend, x.device, 'fdconv_dynamic_conv') == 'triton'
    return _FDConvFunction.apply(x, spectrum, kernel_att, local_feat, local_weight, pos_att, in_att, out_att, bias,
                                 band_index, float(scale), stride, padding, dilation, fold, triton)


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
