"""Frequency Band Modulation (SPEC §2.3), lean: ``x' = Σ_m A_m ⊙ B_m + low``.

Bands of x come from nested square (Chebyshev) low-passes L_c of ``rfft2(x, norm='ortho')``: a coefficient passes
L_c when max(|fr|, |fc|) ≤ c (cycles/pixel). With cut-offs c_1 > c_2 > … > c_M: B_1 = x − L_1, B_m = L_{m−1} − L_m,
low = L_M. The mask is symmetric under f → −f, so every L_c is real (the release boxes fftshift indices, which is
one coefficient asymmetric on even sizes, and keeps the real part).

A square mask is separable, so L_c(x) = P_H x P_W with P_N = U_N U_Nᵀ the orthogonal projection onto the real
Fourier basis U_N (N × (2K+1): the constant, √(2/N)·cos and √(2/N)·sin of frequencies k/N ≤ c, k = 1…K). Ordered by
frequency, the bases of all cut-offs are prefixes of the widest one. The lean path therefore computes the
coefficients Y = U_Hᵀ x U_W of the widest band once (two GEMMs, a quarter of x's size, the only thing saved for
backward besides the inputs) and rebuilds each L_m from a sub-block of Y — exactly the FFT-mask operator, with
GEMMs instead of 1 + M full-size FFTs. Written as ``x' = A_1 x + Σ_m (A_{m+1} − A_m) L_m`` (A_{M+1} = 1); L_c is
self-adjoint, which gives the input gradient: the M weighted gradients are projected onto their bands, their
coefficient blocks added (nested, zero-padded to the widest) and rebuilt once. All of it runs in fp32, also under
autocast; the result has x's dtype.
"""
import functools
import math

import torch

CUTOFFS = (1 / 4, 1 / 8, 1 / 16)


def _max_frequency(n, cutoff):
    """Largest integer k < n/2 with k/n ≤ cutoff (cutoff < 1/2)."""
    return min(math.floor(cutoff * n), (n - 1) // 2)


def lowpass_masks(height: int, width: int, cutoffs=CUTOFFS, device=None) -> torch.Tensor:
    """Float32 (M, H, ⌊W/2⌋+1) masks of the rfft2 coefficients passing each cut-off (max(|fr|, |fc|) ≤ c)."""
    index_h = torch.arange(height, device=device)
    kr = torch.minimum(index_h, height - index_h)  # |signed frequency index|
    kc = torch.arange(width // 2 + 1, device=device)
    masks = [(kr[:, None] <= _max_frequency(height, c)) & (kc[None, :] <= _max_frequency(width, c)) for c in cutoffs]
    return torch.stack(masks).float()


@functools.lru_cache(maxsize=256)
def fourier_basis(n: int, cutoff: float, device=None) -> torch.Tensor:
    """Orthonormal real Fourier basis (n, 2K+1) of the frequencies k/n ≤ cutoff, ordered DC, cos 1, sin 1, cos 2, …

    Cached per (n, cutoff, device); treat the result as read-only.
    """
    t = torch.arange(n, dtype=torch.float64)
    columns = [torch.full((n,), 1 / math.sqrt(n), dtype=torch.float64)]
    for k in range(1, _max_frequency(n, cutoff) + 1):
        angle = 2 * math.pi * k * t / n
        columns += [angle.cos() * math.sqrt(2 / n), angle.sin() * math.sqrt(2 / n)]
    return torch.stack(columns, 1).float().to(device)


def _bases(x, cutoffs):
    h, w = x.shape[-2:]
    sizes = [(2 * _max_frequency(h, c) + 1, 2 * _max_frequency(w, c) + 1) for c in cutoffs]
    return fourier_basis(h, cutoffs[0], x.device), fourier_basis(w, cutoffs[0], x.device), sizes


def _project(x, u_h, u_w):
    """Coefficients U_Hᵀ x U_W: (…, H, W) -> (…, r_H, r_W)."""
    return u_h.t() @ (x @ u_w)


def _rebuild(coefficients, u_h, u_w, size):
    """U_H[:, :a] · Y[:a, :b] · U_W[:, :b]ᵀ for the band of sub-block size (a, b): (…, H, W).

    The small product U_H·Y comes first, so that the full-size output is one GEMM over all images and rows.
    """
    a, b = size
    return (u_h[:, :a] @ coefficients[..., :a, :b]) @ u_w[:, :b].t()


def _weights(att32, m):
    """(A_{m+1} − A_m), the factor of L_m in x' (A_{M+1} = 1)."""
    nxt = att32[:, m + 1:m + 2] if m + 1 < att32.shape[1] else 1.0
    return nxt - att32[:, m:m + 1]


class _FrequencyBandMix(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, att, cutoffs):
        with torch.autocast(x.device.type, enabled=False):
            x32, att32 = x.float(), att.float()
            u_h, u_w, sizes = _bases(x32, cutoffs)
            coefficients = _project(x32, u_h, u_w)
            out = x32 * att32[:, :1]
            for m, size in enumerate(sizes):
                out.addcmul_(_rebuild(coefficients, u_h, u_w, size), _weights(att32, m))
        ctx.save_for_backward(x, att, coefficients)
        ctx.cutoffs = cutoffs
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, att, coefficients = ctx.saved_tensors
        grad_x = grad_att = None
        with torch.autocast(x.device.type, enabled=False):
            grad, att32 = grad.float(), att.float()
            u_h, u_w, sizes = _bases(grad, ctx.cutoffs)
            if ctx.needs_input_grad[1]:
                grad_att = torch.empty_like(att32)
                previous = x.float()
                for m, size in enumerate(sizes):
                    low = _rebuild(coefficients, u_h, u_w, size)
                    grad_att[:, m] = (previous - low).mul_(grad).sum(1)
                    previous = low
                grad_att = grad_att.to(att.dtype)
            if ctx.needs_input_grad[0]:
                # Σ_m L_m(grad·w_m): project each weighted gradient onto its band, add the coefficient blocks
                # (zero-padded to the widest band) and rebuild once
                total = None
                for m, (a, b) in enumerate(sizes):
                    block = _project(grad * _weights(att32, m), u_h[:, :a], u_w[:, :b])
                    if total is None:
                        total = block
                    else:
                        total[..., :a, :b] += block
                grad_x = _rebuild(total, u_h, u_w, sizes[0])
                grad_x.addcmul_(grad, att32[:, :1])
                grad_x = grad_x.to(x.dtype)
        return grad_x, grad_att, None


def frequency_band_mix(x: torch.Tensor, att: torch.Tensor, cutoffs=CUTOFFS) -> torch.Tensor:
    """Re-weight the frequency bands of x per pixel: ``Σ_m att[:, m] ⊙ B_m(x) + low(x)``.

    Args:
        x: (B, C, H, W) floating.
        att: (B, M, H, W) band modulation maps, M = len(cutoffs) (1 everywhere = identity).
        cutoffs: strictly decreasing low-pass cut-offs in cycles/pixel, each in (0, 1/2).

    Returns:
        (B, C, H, W) in x's dtype.
    """
    _check(x, att, cutoffs)
    return _FrequencyBandMix.apply(x, att, tuple(float(c) for c in cutoffs))


def _check(x, att, cutoffs):
    for name, t in (('x', x), ('att', att)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f'frequency_band_mix: {name} must be a torch.Tensor, got {type(t).__name__}')
        if t.dim() != 4 or not t.is_floating_point():
            raise ValueError(f'frequency_band_mix: {name} must be a 4-D floating tensor, got {t.dtype} '
                             f'shape {tuple(t.shape)}')
    if not cutoffs or any(not 0 < c < 0.5 for c in cutoffs) or any(a <= b for a, b in zip(cutoffs, cutoffs[1:])):
        raise ValueError(f'frequency_band_mix: cutoffs must be strictly decreasing values in (0, 0.5), got {cutoffs}')
    b, _, h, w = x.shape
    if tuple(att.shape) != (b, len(cutoffs), h, w):
        raise ValueError(f'frequency_band_mix: att must have shape (B, M, H, W) = {(b, len(cutoffs), h, w)}, '
                         f'got {tuple(att.shape)}')
