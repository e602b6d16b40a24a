"""FDConv's per-sample kernel assembly (docs/fdconv.md) and its gradients, the torch path beside the fused Triton
kernels of :mod:`.fdconv_triton` (which replace the per-entry passes on CUDA; this code is their reference).

W_b = α_in ⊙ α_out ⊙ α_pos ⊙ α_local ⊙ irfft2(spectrum·scale·π_b[band]), α_local = 2·sigmoid(conv1d(local_feat)),
built for a chunk of samples at a time in the (b, Co, k, k, Ci) layout (a channels-last conv weight, and the layout
of the local logits, so every element-wise pass is contiguous). The spectral mix is one inverse FFT per sample; its
normalisation, the factor 2 of α_local and the Hermitian doubling of the adjoint ride on scalars / per-column
constants applied once; the spectrum and π gradients take one pass each over rfft2(d tiles). Runs in fp32.
"""
import torch
import torch.nn.functional as F

__all__ = ['KernelAssembly', 'allocate_weight_grads', 'weight_backward', 'spectral_backward', 'finish_spectrum_grad']


class KernelAssembly:
    """The op's small inputs in fp32 and the per-chunk pieces of W in the (b, Co, k, k, Ci) layout.

    Args:
        weight: the :class:`~.fdconv_inputs.FDConvWeight`; att: the :class:`~.fdconv_inputs.FDConvAttention`.
        g: the op's geometry (``co``, ``ci``, ``k``, ``b``, ``fold``). triton: use the fused kernels.
    """

    def __init__(self, weight, att, g, triton):
        self.g = g
        self.triton = triton
        rows, cols = g.co * g.k, g.ci * g.k
        self.size = (rows, cols)
        spectrum, band_index, scale, local_weight = weight
        kernel_att, local_feat, pos_att, in_att, out_att = att
        half = spectrum.shape[1]
        self.spectrum = torch.view_as_complex(spectrum.float().contiguous())   # S: (rows, half) complex
        # irfft2 runs with norm='forward'; 1/(rows·cols) and the 2 of α_local ride on the spectrum scale
        self.forward_scale = 2 * scale / (rows * cols)
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

    def tiles(self, rows, out=None):
        """Mixed kernels 2·irfft2(spectrum·scale·π_b[band]) of samples ``rows`` in the (b, Co, k, k, Ci) layout;
        (1, Co, k, k, Ci) without kernel attention. ``out``: a contiguous tensor of that shape to write them into
        (the torch path; one copy instead of two when the forward saves them)."""
        g = self.g
        if self.kernel_att is None:
            spec = (self.spectrum * self.forward_scale)[None]
        else:
            # complex · real as a real product on the (re, im) view: the same values without promoting the real
            # factor to complex (3× faster on the CPU)
            coefficients = self.coefficients(rows, self.forward_scale).unsqueeze(-1)
            spec = torch.view_as_complex(torch.view_as_real(self.spectrum) * coefficients)
        tiled = torch.fft.irfft2(spec, s=self.size, norm='forward')
        del spec
        tiles = tiled.view(-1, g.co, g.k, g.ci, g.k).transpose(3, 4)
        if out is not None:
            return out.copy_(tiles)
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



def allocate_weight_grads(kernels, needs, grads):
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


def weight_backward(grad, tiles, sigma, kernels, rows, needs, grads):
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
                                                    (need_small, need_tiles, need_logits), grads)
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


def _weight_backward_torch(grad, tiles, sigma, kernels, rows, wanted, grads):
    """The reference of the fused backward kernel: (d tiles or None, d local logits or None); ``grad`` is
    overwritten. ``wanted``: (need_small, need_tiles, need_logits) as :func:`weight_backward` computes them."""
    g = kernels.g
    need_small, need_tiles, need_logits = wanted
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


def spectral_backward(grad_tiles, kernels, rows, need_spec, need_kernel, grads):
    """Gradients of the spectrum and π from d tiles (b, Co, k, k, Ci); ``rows`` None = no π (shared tiles).

    With Y_b = rfft2(d tiles_b) (unnormalised) and a = ``adjoint_scale``, d mixed spectrum_b = a·Y_b. ``grads['spec']``
    accumulates Σ_b Y_b·π_b[band] without a (applied once by :func:`finish_spectrum_grad`); d π_b[j] = Σ_{band j}
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


def finish_spectrum_grad(kernels, grads):
    if grads['spec'] is not None:
        grads['spec'].mul_(kernels.adjoint_scale[:, None])
