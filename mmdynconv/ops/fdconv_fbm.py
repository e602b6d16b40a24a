"""Frequency Band Modulation (SPEC §2.3), memory-lean: ``x' = Σ_m A_m ⊙ B_m + low``.

Bands of x come from nested square (Chebyshev) low-passes L_c on ``rfft2(x, norm='ortho')``: a coefficient passes
L_c when max(|fr|, |fc|) ≤ c (cycles/pixel). With cut-offs c_1 > c_2 > … > c_M: B_1 = x − L_1, B_m = L_{m−1} − L_m,
low = L_M. The mask is symmetric under f → −f, so every L_c is real (the release boxes fftshift indices, which is
one coefficient asymmetric on even sizes, and keeps the real part).

Rewritten as ``x' = A_1 x + Σ_m (A_{m+1} − A_m) L_m`` (A_{M+1} = 1), the forward needs one rfft2 and M irfft2 and
saves nothing but the inputs; the backward recomputes the low-passes (L_c is self-adjoint). All FFT work is fp32,
also under autocast; the result has x's dtype.
"""
import torch

CUTOFFS = (1 / 4, 1 / 8, 1 / 16)


def lowpass_masks(height: int, width: int, cutoffs=CUTOFFS, device=None) -> torch.Tensor:
    """Float32 (M, H, ⌊W/2⌋+1) masks of the rfft2 coefficients passing each cut-off (max(|fr|, |fc|) ≤ c)."""
    fr = torch.fft.fftfreq(height, dtype=torch.float64, device=device).abs()
    fc = torch.fft.rfftfreq(width, dtype=torch.float64, device=device)
    masks = [(fr[:, None] <= c) & (fc[None, :] <= c) for c in cutoffs]
    return torch.stack(masks).float()


def _lowpass(spectrum, mask, size):
    return torch.fft.irfft2(spectrum * mask, s=size, norm='ortho')


def _combine(x32, att32, masks):
    """Return x' = A_1 x + Σ_m (A_{m+1} − A_m) L_m in fp32; x32 (B, C, H, W), att32 (B, M, H, W)."""
    size = x32.shape[-2:]
    spectrum = torch.fft.rfft2(x32, norm='ortho')
    out = x32 * att32[:, :1]
    for m in range(masks.shape[0]):
        nxt = att32[:, m + 1:m + 2] if m + 1 < masks.shape[0] else 1.0
        out.add_(_lowpass(spectrum, masks[m], size) * (nxt - att32[:, m:m + 1]))
    return out


class _FrequencyBandMix(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, att, cutoffs):
        ctx.save_for_backward(x, att)
        ctx.cutoffs = cutoffs
        with torch.autocast(x.device.type, enabled=False):
            masks = lowpass_masks(*x.shape[-2:], cutoffs, x.device)
            return _combine(x.float(), att.float(), masks).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        x, att = ctx.saved_tensors
        size = x.shape[-2:]
        with torch.autocast(x.device.type, enabled=False):
            masks = lowpass_masks(*size, ctx.cutoffs, x.device)
            grad, x32, att32 = grad.float(), x.float(), att.float()
            num = masks.shape[0]
            grad_att = grad_x = None
            if ctx.needs_input_grad[1]:
                spectrum = torch.fft.rfft2(x32, norm='ortho')
                grad_att = torch.empty_like(att32)
                previous = x32
                for m in range(num):
                    low = _lowpass(spectrum, masks[m], size)
                    grad_att[:, m] = (grad * (previous - low)).sum(1)
                    previous = low
                del spectrum, previous, low
                grad_att = grad_att.to(att.dtype)
            if ctx.needs_input_grad[0]:
                # L_c is self-adjoint: dx = A_1 g + L^{-1}[Σ_m mask_m ⊙ rfft2((A_{m+1} − A_m) g)].
                acc = None
                for m in range(num):
                    nxt = att32[:, m + 1:m + 2] if m + 1 < num else 1.0
                    term = torch.fft.rfft2(grad * (nxt - att32[:, m:m + 1]), norm='ortho').mul_(masks[m])
                    acc = term if acc is None else acc.add_(term)
                grad_x = torch.fft.irfft2(acc, s=size, norm='ortho').addcmul_(grad, att32[:, :1]).to(x.dtype)
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
