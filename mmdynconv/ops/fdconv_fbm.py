"""Frequency Band Modulation (docs/fdconv.md), lean: ``x' = Σ_m A_m ⊙ B_m + low``.

Bands of x come from nested low-pass masks L_m of ``rfft2(x, norm='ortho')`` at cut-offs c_1 > c_2 > … > c_M
(cycles/pixel): B_1 = x − L_1, B_m = L_{m−1} − L_m, low = L_M. Two mask definitions (``mask_mode``):

- ``'release'`` (default, what produced the published numbers): the authors' masks. They are built once on a 64×64
  frequency grid in fp32 — a coefficient passes when max(|fr|, |fc|) < c + 1e-8, which in fp32 makes 1/4 exclusive
  and 1/8, 1/16 inclusive — and nearest-resized to each input's (H, ⌊W/2⌋+1) frequency grid. They are therefore
  size-dependent, and at sizes such as 14, 28, 56 or 100 not symmetric under f_r → −f_r.
- ``'symmetric'``: max(|fr|, |fc|) ≤ c on the input's own grid — symmetric squares, the same cut-off at every size.

Both are separable: mask = r ⊗ c with a row mask r over the H fft rows and a column mask c over the rfft columns. In
the real Fourier basis U_N (N × …: the constant, √(2/N)·cos and √(2/N)·sin of k/N, and cos π·t at Nyquist) the
operator ``irfft2(mask · rfft2(x))`` is, on the coefficients Y = U_Hᵀ x U_W,

    Y ↦ (s ⊗ c) ⊙ Y + T Y Qᵀ

where s_k = (r_k + r_{−k})/2 per row frequency, T rotates each (cos_k, sin_k) row pair with weight
a_k = (r_k − r_{−k})/2 (the asymmetric part of the row mask), and Q rotates each (cos_j, sin_j) column pair where
c_j = 1. For symmetric masks T = 0. The operator is self-adjoint, which gives the input gradient.

The lean path therefore computes the coefficients of the widest band once (two GEMMs, a fraction of x's size, the
only thing saved for backward besides the inputs), applies each band's small coefficient map to a sub-block and
rebuilds — exactly the FFT-mask operator, with GEMMs instead of 1 + M full-size FFTs. Written as
``x' = A_1 x + Σ_m (A_{m+1} − A_m) L_m x`` (A_{M+1} = 1); the input gradient projects the M weighted gradients, maps
and adds their coefficient blocks, and rebuilds once. All of it runs in fp32, also under autocast; the result has
x's dtype.

An FFT path (:func:`_fft_forward`) computes the same operator with the masked FFTs themselves, cheaper at large
maps; :func:`choose_path` picks one per input size and device by a measured cost model, and ``path=`` /
``MMDYNCONV_FBM_PATH`` force either (docs/fdconv.md, "FBM: GEMM or FFT, chosen by cost").

Both paths are one custom op, ``mmdynconv::frequency_band_mix`` (with ``mmdynconv::frequency_band_mix_backward``;
fake implementations for torch.compile / torch.export, which see one node): it returns the output and the tensor
its backward needs (the GEMM path's coefficients, or the FFT path's cropped spectrum, complex); the path is chosen
inside the op, from the input size, the device and ``path``. Masks and bases are cached per size and device; the
op's implementation runs on real tensors only, so nothing traced is ever cached.
"""
import contextlib
import functools
import math
import os
from typing import List

import torch
from torch.utils._python_dispatch import _disable_current_modes

from .backend import resolve_backend
from .compat import NAMESPACE, fake_mode_active, is_compiling, register_op, reject_double_backward

OP_NAME = 'frequency_band_mix'
OP_BACKENDS = ('reference',)

__all__ = ['OP_NAME', 'OP_BACKENDS', 'CUTOFFS', 'MASK_MODES', 'PATHS', 'PATH_ENV', 'FFT_CROSSOVER',
           'frequency_band_mix', 'check_frequency_band_mix_args', 'lowpass_masks', 'fourier_basis', 'fbm_cost_ratio',
           'choose_path']

CUTOFFS = (1 / 4, 1 / 8, 1 / 16)
MASK_MODES = ('release', 'symmetric')
RELEASE_GRID = 64          # the release builds its masks on a 64×64 frequency grid
RELEASE_EPSILON = 1e-8     # … with a `< cutoff + 1e-8` test in fp32


# Tensors cached below are never built while torch.compile / torch.export trace (a cached fake tensor would break
# later eager calls): the op's implementation runs on real tensors only; what runs outside it (lowpass_masks, the cost
# model's widths, the fake implementation) checks _tracing() and then builds from real tensors, caching ints only.


def _tracing():
    return is_compiling() or fake_mode_active()


@contextlib.contextmanager
def _real_tensors():
    """Build constants as real CPU tensors even inside a trace (no fake mode, no torch-function modes)."""
    with _disable_current_modes(), torch._C.DisableTorchFunction():
        yield


def _nearest_source_index(out_size, in_size):
    """The source index of every output index of ``F.interpolate(mode='nearest')``, as ATen computes it (identity,
    ×2 by halving, else ⌊i·(in/out)⌋ in float32)."""
    index = torch.arange(out_size)
    if out_size == in_size:
        return index
    if out_size == 2 * in_size:
        return index // 2
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    return torch.floor(index.float() * scale).long().clamp(max=in_size - 1)


def _release_grid_masks(cutoffs):
    """(M, 64, 33) masks on the release's grid: max(|fftfreq(64)|, |rfftfreq(64)|) < c + 1e-8, in float32."""
    fr = torch.fft.fftfreq(RELEASE_GRID, dtype=torch.float32).abs()      # k/64: exact in float32
    fc = torch.fft.rfftfreq(RELEASE_GRID, dtype=torch.float32)
    radius = torch.maximum(fr[:, None], fc[None, :])
    return torch.stack([radius < torch.tensor(c + RELEASE_EPSILON, dtype=torch.float32) for c in cutoffs]).float()


def _symmetric_masks(height, width, cutoffs):
    index_h = torch.arange(height)
    kr = torch.minimum(index_h, height - index_h)  # |signed frequency index|
    kc = torch.arange(width // 2 + 1)
    masks = [(kr[:, None] <= math.floor(c * height)) & (kc[None, :] <= math.floor(c * width)) for c in cutoffs]
    return torch.stack(masks).float()


def _build_masks(height, width, cutoffs, mask_mode):
    """(M, H, ⌊W/2⌋+1) float32 CPU masks."""
    if mask_mode == 'symmetric':
        return _symmetric_masks(height, width, cutoffs)
    grid = _release_grid_masks(cutoffs)   # nearest-resized to the input's frequency grid, as the release does
    rows = _nearest_source_index(height, grid.shape[1])
    cols = _nearest_source_index(width // 2 + 1, grid.shape[2])
    return grid[:, rows][:, :, cols].contiguous()


_cached_masks = functools.lru_cache(maxsize=256)(_build_masks)


def _masks(height, width, cutoffs, mask_mode):
    if not _tracing():
        return _cached_masks(height, width, cutoffs, mask_mode)
    with _real_tensors():
        return _build_masks(height, width, cutoffs, mask_mode)


def lowpass_masks(height: int, width: int, cutoffs=CUTOFFS, mask_mode: str = 'release', device=None) -> torch.Tensor:
    """Float32 (M, H, ⌊W/2⌋+1) 0/1 masks of the rfft2 coefficients that pass each cut-off (see module docstring)."""
    _check_mask_mode(mask_mode, 'lowpass_masks')
    masks = _masks(int(height), int(width), tuple(float(c) for c in cutoffs), mask_mode)
    return masks.to(device, copy=True)


def _build_basis(n, max_frequency):
    t = torch.arange(n, dtype=torch.float64)
    columns = [torch.full((n,), 1 / math.sqrt(n), dtype=torch.float64)]
    for k in range(1, max_frequency + 1):
        angle = 2 * math.pi * k * t / n
        if 2 * k == n:
            columns.append(angle.cos() / math.sqrt(n))
        else:
            columns += [angle.cos() * math.sqrt(2 / n), angle.sin() * math.sqrt(2 / n)]
    return torch.stack(columns, 1).float()


def fourier_basis(n: int, max_frequency: int, device=None) -> torch.Tensor:
    """Orthonormal real Fourier basis (n, ·) of the frequencies 0…max_frequency (≤ n/2), ordered DC, cos 1, sin 1,
    cos 2, …; at Nyquist (max_frequency = n/2, n even) only the cosine. Float32."""
    return _build_basis(n, max_frequency).to(device)


def _basis_width(n, max_frequency):
    return 2 * max_frequency + 1 - (1 if 2 * max_frequency == n and n > 0 else 0)


def _basis_weights(mask_1d, n, kmax, rows):
    """Per basis function of U_n up to kmax: the mask weight, the signed weight of the pair rotation and the index of
    its rotation partner (cos_k ↔ sin_k). Rows (fft layout, both signs r_k, r_−k): weight (r_k + r_−k)/2 and T, which
    maps cos ← −a·sin, sin ← a·cos with a = (r_k − r_−k)/2. Columns (rfft layout, c_k): weight c_k and Q, which maps
    ĉ ← c_k·ŝ, ŝ ← −c_k·ĉ."""
    width = _basis_width(n, kmax)
    weight, rotation, partner = torch.zeros(width), torch.zeros(width), torch.arange(width)
    weight[0] = mask_1d[0]
    for k in range(1, kmax + 1):
        p = float(mask_1d[k])
        if 2 * k == n:  # Nyquist: a cosine only, never rotated
            weight[width - 1] = p
            continue
        q = float(mask_1d[n - k]) if rows else p
        cos, sin = 2 * k - 1, 2 * k
        weight[cos] = weight[sin] = (p + q) / 2
        rotation[cos], rotation[sin] = (-(p - q) / 2, (p - q) / 2) if rows else (p, -p)
        partner[cos], partner[sin] = sin, cos
    return weight, rotation, partner


def _max_frequency(mask_1d, n, rows):
    """Largest frequency index with a passing coefficient (rows: fft layout, both signs; cols: rfft layout)."""
    return max(k for k in range(n // 2 + 1) if mask_1d[k] or (rows and mask_1d[(n - k) % n]))


class _Band:
    """One band's coefficient map on the (a, b) sub-block: Y ↦ (s ⊗ w) ⊙ Y + (t ⊗ q) ⊙ Y[partner_r][:, partner_c]."""

    def __init__(self, mask, h, w, device):
        r, c = mask[:, 0], mask[0, :]
        if not torch.equal(r[:, None] * c[None, :], mask):
            raise AssertionError('FBM masks must be separable')  # true of both mask modes by construction
        kh, kw = _max_frequency(r, h, True), _max_frequency(c, w, False)
        self.size = (_basis_width(h, kh), _basis_width(w, kw))
        s, t, partner_r = _basis_weights(r, h, kh, rows=True)
        wc, q, partner_c = _basis_weights(c, w, kw, rows=False)
        self.scale = None if bool((s == 1).all() and (wc == 1).all()) else (s[:, None] * wc[None, :]).to(device)
        self.rotation = None if bool((t == 0).all()) else (t[:, None] * q[None, :]).to(device)
        self.partner_r, self.partner_c = partner_r.to(device), partner_c.to(device)

    def apply(self, y):
        """The band's map on coefficients y (…, a, b) -> (…, a, b) (y itself when the map is the identity)."""
        out = y if self.scale is None else y * self.scale
        if self.rotation is not None:
            out = out + y.index_select(-2, self.partner_r).index_select(-1, self.partner_c) * self.rotation
        return out


def _build_plan(h, w, cutoffs, mask_mode, device):
    masks = _build_masks(h, w, cutoffs, mask_mode)
    kh = max(_max_frequency(m[:, 0], h, True) for m in masks)
    kw = max(_max_frequency(m[0, :], w, False) for m in masks)
    bands = [_Band(m, h, w, device) for m in masks]
    return _build_basis(h, kh).to(device), _build_basis(w, kw).to(device), bands


_plan = functools.lru_cache(maxsize=256)(_build_plan)
"""Row and column bases of the widest band and every band's coefficient map, cached per size and device."""


def _project(x, u_h, u_w):
    """Coefficients U_Hᵀ x U_W: (…, H, W) -> (…, r_H, r_W)."""
    return u_h.t() @ (x @ u_w)


def _rebuild(coefficients, u_h, u_w, size):
    """U_H[:, :a] · Y[:a, :b] · U_W[:, :b]ᵀ for a sub-block of size (a, b): (…, H, W).

    The small product U_H·Y comes first, so that the full-size output is one GEMM over all images and rows.
    """
    a, b = size
    return (u_h[:, :a] @ coefficients[..., :a, :b]) @ u_w[:, :b].t()


def _lowpass(coefficients, u_h, u_w, band):
    a, b = band.size
    return _rebuild(band.apply(coefficients[..., :a, :b]), u_h, u_w, band.size)


def _weights(att32, m):
    """(A_{m+1} − A_m), the factor of L_m in x' (A_{M+1} = 1)."""
    nxt = att32[:, m + 1:m + 2] if m + 1 < att32.shape[1] else 1.0
    return nxt - att32[:, m:m + 1]


def _gemm_forward(x, att, cutoffs, mask_mode):
    """x (B, C, H, W), att (B, M, H, W) -> (x' in fp32, the widest band's coefficients (B, C, r_H, r_W) fp32)."""
    x32, att32 = x.float(), att.float()
    u_h, u_w, bands = _plan(*x.shape[-2:], cutoffs, mask_mode, x.device)
    coefficients = _project(x32, u_h, u_w)
    out = torch.mul(x32, att32[:, :1], out=x32.new_empty(x32.shape))
    for m, band in enumerate(bands):
        out.addcmul_(_lowpass(coefficients, u_h, u_w, band), _weights(att32, m))
    return out, coefficients


def _gemm_backward(grad, x, att, coefficients, cutoffs, mask_mode, needs):
    """The fp32 gradients of (x, att) from :func:`_gemm_forward`'s saved coefficients (None where not needed)."""
    grad_x = grad_att = None
    grad, att32 = grad.float(), att.float()
    u_h, u_w, bands = _plan(*x.shape[-2:], cutoffs, mask_mode, x.device)
    if needs[1]:
        grad_att = att32.new_empty(att32.shape)
        previous = x.float()
        for m, band in enumerate(bands):
            low = _lowpass(coefficients, u_h, u_w, band)
            grad_att[:, m] = (previous - low).mul_(grad).sum(1)
            previous = low
    if needs[0]:
        # Σ_m L_m(grad·w_m) (L_m is self-adjoint): project each weighted gradient onto its band, map and add the
        # coefficient blocks (zero-padded to the widest band) and rebuild once
        total = grad.new_zeros(*grad.shape[:-2], u_h.shape[1], u_w.shape[1])
        for m, band in enumerate(bands):
            a, b = band.size
            block = _project(grad * _weights(att32, m), u_h[:, :a], u_w[:, :b])
            total[..., :a, :b] += band.apply(block)
        grad_x = _rebuild(total, u_h, u_w, total.shape[-2:])
        grad_x.addcmul_(grad, att32[:, :1])
    return grad_x, grad_att


# ------------------------------------------------------------------------------------------------------ FFT path
# A W-direction transform of few rfft columns runs as one GEMM with the real DFT matrix (W × 2·n_cols): its cost per
# row grows as n_cols·W, an FFT's as W·d(W) with d(W) = (sum of W's prime factors)/2 (log2(W) for powers of two; a
# factor such as 19 in 76, 152, 304 makes the FFT dearer). Measured on the CPU with one thread (B·C·H ≈ 25600 rows,
# W ∈ {76, 128, 152, 304}): the GEMM is as fast or faster up to n_cols ≈ 1.2–3·d(W) forward and 2.2–4·d(W) inverse.
GEMM_COLUMNS_FORWARD = 1.5
GEMM_COLUMNS_INVERSE = 2.5


@functools.lru_cache(maxsize=256)
def _fft_depth(n):
    """d(n) = (sum of n's prime factors, with multiplicity) / 2: an FFT's work per point, up to a constant."""
    total, p = 0, 2
    while p * p <= n:
        while n % p == 0:
            total, n = total + p, n // p
        p += 1
    return (total + (n if n > 1 else 0)) / 2


def _build_fft_masks(h, w, cutoffs, mask_mode, device):
    """The masks cropped to the rfft columns the widest band reaches: (M, H, n_cols) float32 on ``device``."""
    masks = _build_masks(h, w, cutoffs, mask_mode)
    n_cols = max(_max_frequency(m[0, :], w, False) for m in masks) + 1
    return masks[:, :, :n_cols].contiguous().to(device)


_fft_masks = functools.lru_cache(maxsize=256)(_build_fft_masks)


@functools.lru_cache(maxsize=256)
def _band_columns(h, w, cutoffs, mask_mode):
    """Per band, the rfft columns it passes (its highest passing column + 1): a tuple of M ints."""
    return tuple(_max_frequency(m[0, :], w, False) + 1 for m in _build_masks(h, w, cutoffs, mask_mode))


def _build_dft(width, n_cols, inverse, device):
    """The real DFT matrix of the first ``n_cols`` rfft columns, norm='ortho', (re, im) interleaved: forward
    (W, 2·n_cols) (x ↦ rfft(x)[:n_cols]); inverse (2·n_cols, W) (irfft of those columns, the rest zero: Hermitian
    weights 1 at DC and Nyquist, 2 elsewhere; imaginary parts of DC and Nyquist ignored as irfft does)."""
    k = torch.arange(n_cols, dtype=torch.float64)
    angle = 2 * math.pi * k[:, None] * torch.arange(width, dtype=torch.float64)[None, :] / width   # (n_cols, W)
    cos, sin = angle.cos(), angle.sin()
    if inverse:
        hermitian = torch.full((n_cols, 1), 2.0, dtype=torch.float64)
        hermitian[0] = 1
        if 2 * (n_cols - 1) == width:
            hermitian[-1] = 1
            sin[-1] = 0
        sin[0] = 0
        matrix = torch.stack([cos * hermitian, -sin * hermitian], 1).reshape(2 * n_cols, width)
    else:
        matrix = torch.stack([cos, -sin], 1).reshape(2 * n_cols, width).t()
    return (matrix / math.sqrt(width)).float().contiguous().to(device)


_dft = functools.lru_cache(maxsize=64)(_build_dft)


def _rows_spectrum(x32, n_cols, gemm):
    """``rfft(x, dim=-1, norm='ortho')[..., :n_cols]``: (…, W) real -> (…, n_cols) complex; by GEMM when ``gemm``."""
    width = x32.shape[-1]
    if gemm and n_cols <= GEMM_COLUMNS_FORWARD * _fft_depth(width):
        return torch.view_as_complex((x32 @ _dft(width, n_cols, False, x32.device)).unflatten(-1, (n_cols, 2)))
    return torch.fft.rfft(x32, dim=-1, norm='ortho')[..., :n_cols]


def _spectrum(x32, n_cols, gemm=False):
    """``rfft2(x, norm='ortho')`` restricted to its first ``n_cols`` columns: the rfft along W, the columns no band
    passes dropped, then the fft along H of the rest (the same values as rfft2's, computed for fewer columns). With
    ``gemm`` the W transform of few columns is a GEMM (the op's saved spectrum is always the rfft's, whose strides the
    fake implementation reproduces)."""
    return torch.fft.fft(_rows_spectrum(x32, n_cols, gemm), dim=-2, norm='ortho')


def _inverse(spectrum, width):
    """``irfft2(spectrum, s=(H, width), norm='ortho')`` of a spectrum given on its first columns (the rest zero).

    Few columns: the W inverse is one GEMM. Otherwise the zero columns are written explicitly: torch's own padding
    (``irfft`` of a shorter input with ``n=width``) took twice as long as the transform on the CPU."""
    rows = torch.fft.ifft(spectrum, dim=-2, norm='ortho')
    n_cols = rows.shape[-1]
    if n_cols <= GEMM_COLUMNS_INVERSE * _fft_depth(width):
        return torch.view_as_real(rows).flatten(-2) @ _dft(width, n_cols, True, rows.device)
    if n_cols < width // 2 + 1:
        padded = rows.new_zeros(*rows.shape[:-1], width // 2 + 1)
        padded[..., :n_cols] = rows
        rows = padded
    return torch.fft.irfft(rows, n=width, dim=-1, norm='ortho')


def _band_lowpass(spectrum, masks, columns, m, width):
    """L_m x from the cropped spectrum: band m's mask on the columns it passes, inverted: (…, H, W) fp32."""
    c = columns[m]
    return _inverse(spectrum[..., :c] * masks[m, :, :c], width)


def _fft_forward(x, att, cutoffs, mask_mode):
    """The masked FFTs themselves: one rfft2 of x, and per band the masked spectrum's irfft2, each restricted to the
    rfft columns its band passes. x (B, C, H, W), att (B, M, H, W) -> (x' in fp32, the spectrum cropped to the widest
    band's columns (B, C, H, n_cols) complex64: about half of x's size at the 1/4 cut-off, not the M full-size
    low-passes)."""
    x32, att32 = x.float(), att.float()
    h, w = x.shape[-2:]
    masks = _fft_masks(h, w, cutoffs, mask_mode, x.device)
    columns = _band_columns(h, w, cutoffs, mask_mode)
    spectrum = _spectrum(x32, masks.shape[-1])
    out = torch.mul(x32, att32[:, :1], out=x32.new_empty(x32.shape))
    for m in range(masks.shape[0]):
        out.addcmul_(_band_lowpass(spectrum, masks, columns, m, w), _weights(att32, m))
    return out, spectrum


def _fft_backward(grad, x, att, spectrum, cutoffs, mask_mode, needs):
    """The fp32 gradients of (x, att) from :func:`_fft_forward`'s saved spectrum (None where not needed): att's
    recomputes the M low-passes, x's comes from M forward transforms of the weighted gradients (each on its band's
    columns), masked and summed in the frequency domain, and one inverse (each L_m is self-adjoint, see the module
    docstring)."""
    grad_x = grad_att = None
    grad, att32 = grad.float(), att.float()
    h, w = x.shape[-2:]
    masks = _fft_masks(h, w, cutoffs, mask_mode, x.device)
    columns = _band_columns(h, w, cutoffs, mask_mode)
    if needs[1]:
        grad_att = att32.new_empty(att32.shape)
        previous = x.float()
        for m in range(masks.shape[0]):
            low = _band_lowpass(spectrum, masks, columns, m, w)
            grad_att[:, m] = (previous - low).mul_(grad).sum(1)
            previous = low
        del previous, low
    if needs[0]:
        total = None
        for m in range(masks.shape[0]):
            c = columns[m]
            band = _spectrum(grad * _weights(att32, m), c, gemm=True).mul_(masks[m, :, :c])
            if total is None and c == masks.shape[-1]:
                total = band
                continue
            if total is None:
                total = band.new_zeros(*band.shape[:-1], masks.shape[-1])
            total[..., :c] += band
        grad_x = _inverse(total, w)
        grad_x.addcmul_(grad, att32[:, :1])
    return grad_x, grad_att


# ------------------------------------------------------------------------------------------------- path choice
PATHS = ('auto', 'fft', 'gemm')
PATH_ENV = 'MMDYNCONV_FBM_PATH'
# Cost model (see :func:`choose_path`): the FFT path is taken when fbm_cost_ratio(H, W) >= FFT_CROSSOVER[device type].
# CPU: measured with tools/fbm_crossover.py (docs/fdconv.md). Device types without a measurement (CUDA: no GPU run
# yet) keep the GEMM path, the one the kernels and the release parity were established with.
FFT_CROSSOVER = {'cpu': 5.0}


@functools.lru_cache(maxsize=256)
def _build_widths(h, w, cutoffs, mask_mode):
    masks = _build_masks(h, w, cutoffs, mask_mode)
    kh = max(_max_frequency(m[:, 0], h, True) for m in masks)
    kw = max(_max_frequency(m[0, :], w, False) for m in masks)
    return _basis_width(h, kh), _basis_width(w, kw), kw + 1


def _widths(h, w, cutoffs, mask_mode):
    """(r_H, r_W, n_cols): the widths of the widest band's row and column bases and the rfft columns it passes;
    plain ints, cached, from real tensors also while tracing (never traced masks)."""
    key = (int(h), int(w), tuple(float(c) for c in cutoffs), mask_mode)
    with (_real_tensors() if _tracing() else contextlib.nullcontext()):
        return _build_widths(*key)


def fbm_cost_ratio(height: int, width: int, cutoffs=CUTOFFS, mask_mode: str = 'release') -> float:
    """ρ = (r_H + r_W) / log2(H·W): per image and channel the GEMM path's work grows as H·W·(r_H + r_W) (r_H, r_W:
    the widths of the widest band's row and column bases, about H/2 and W/2 at the 1/4 cut-off), the FFT path's as
    H·W·log2(H·W); ρ is their ratio up to each path's constant, which the measured crossover absorbs."""
    r_h, r_w, _ = _widths(height, width, cutoffs, mask_mode)
    return (r_h + r_w) / math.log2(max(int(height) * int(width), 2))


def choose_path(height: int, width: int, cutoffs=CUTOFFS, mask_mode: str = 'release', device='cpu',
                path=None) -> str:
    """``'fft'`` or ``'gemm'``: the path :func:`frequency_band_mix` takes for an H×W input on ``device``.

    ``path`` (``'auto'``, ``'fft'``, ``'gemm'``; None: the environment variable ``MMDYNCONV_FBM_PATH``, default
    ``'auto'``) forces a path; ``'auto'`` takes the FFT path when :func:`fbm_cost_ratio` reaches the device type's
    :data:`FFT_CROSSOVER` (device types without a measurement take the GEMM path)."""
    path = _resolve_path(path)
    if path != 'auto':
        return path
    device_type = torch.device(device).type
    crossover = FFT_CROSSOVER.get(device_type, math.inf)
    return 'fft' if fbm_cost_ratio(height, width, cutoffs, mask_mode) >= crossover else 'gemm'


def _resolve_path(path):
    if path is None:
        path = os.environ.get(PATH_ENV, '') or 'auto'
        if path not in PATHS:
            raise ValueError(f'frequency_band_mix: environment variable {PATH_ENV} must be one of {PATHS} '
                             f'(or unset), got {path!r}')
    elif path not in PATHS:
        raise ValueError(f'frequency_band_mix: path must be one of {PATHS} or None, got {path!r}')
    return path


def frequency_band_mix(x: torch.Tensor, att: torch.Tensor, cutoffs=CUTOFFS, mask_mode: str = 'release',
                       path=None, backend=None) -> torch.Tensor:
    """Re-weight the frequency bands of x per pixel: ``Σ_m att[:, m] ⊙ B_m(x) + low(x)``.

    Args:
        x: (B, C, H, W) floating.
        att: (B, M, H, W) band modulation maps, M = len(cutoffs) (1 everywhere = identity).
        cutoffs: strictly decreasing low-pass cut-offs in cycles/pixel, each in (0, 1/2).
        mask_mode: ``'release'`` (the authors' size-dependent masks) or ``'symmetric'`` (see the module docstring).
        path: ``'fft'`` or ``'gemm'`` forces an algorithm (both compute the same operator to fp32 rounding);
            ``'auto'`` picks by cost (:func:`choose_path`); None (default) reads ``MMDYNCONV_FBM_PATH``, else auto.
        backend: None or ``'reference'`` (FBM has no Triton kernel; ``'triton'`` is an error).

    Returns:
        (B, C, H, W) in x's dtype.
    """
    check_frequency_band_mix_args(x, att, cutoffs, mask_mode)
    resolve_backend(backend, x.device, OP_NAME, OP_BACKENDS)
    return _band_mix_op(x, att, [float(c) for c in cutoffs], mask_mode, _resolve_path(path))[0]


def _band_mix_forward(x: torch.Tensor, att: torch.Tensor, cutoffs: List[float], mask_mode: str,
                      path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x' in x's dtype, what the backward needs: the GEMM path's coefficients (B, C, r_H, r_W) float32 or the FFT
    path's cropped spectrum (B, C, H, n_cols) complex64); ``path`` ('auto', 'fft', 'gemm') as :func:`choose_path`."""
    cutoffs = tuple(cutoffs)
    fft = choose_path(*x.shape[-2:], cutoffs, mask_mode, x.device, path) == 'fft'
    with torch.autocast(x.device.type, enabled=False):
        out, saved = (_fft_forward if fft else _gemm_forward)(x, att, cutoffs, mask_mode)
    return out.to(x.dtype), saved


def _band_mix_fake(x, att, cutoffs, mask_mode, path):
    b, c, h, w = x.shape
    r_h, r_w, n_cols = _widths(h, w, cutoffs, mask_mode)
    if choose_path(h, w, cutoffs, mask_mode, x.device, path) == 'fft':
        saved = _spectrum(x.float(), n_cols)   # traced FFTs: the strides the FFT kernels give (B, C, H, n_cols)
    else:
        saved = x.new_empty((b, c, r_h, r_w), dtype=torch.float32)
    return torch.empty_like(x, memory_format=torch.contiguous_format), saved


def _band_mix_backward(grad: torch.Tensor, x: torch.Tensor, att: torch.Tensor, saved: torch.Tensor,
                          cutoffs: List[float], mask_mode: str, needs: List[bool]) -> List[torch.Tensor]:
    """The gradients of (x, att) in their dtypes, one not needed an empty tensor. The forward's path is ``saved``'s:
    the FFT path saves a complex spectrum."""
    backward = _fft_backward if saved.is_complex() else _gemm_backward
    with torch.autocast(x.device.type, enabled=False):
        grads = backward(grad, x, att, saved, tuple(cutoffs), mask_mode, needs)
    return [x.new_empty(0) if g is None else g.to(t.dtype) for g, t in zip(grads, (x, att))]


def _band_mix_backward_fake(grad, x, att, saved, cutoffs, mask_mode, needs):
    return [torch.empty_like(t, memory_format=torch.contiguous_format) if need else x.new_empty(0)
            for t, need in zip((x, att), needs)]


def _setup_context(ctx, inputs, output):
    x, att, cutoffs, mask_mode, _ = inputs
    ctx.save_for_backward(x, att, output[1])
    ctx.args = (cutoffs, mask_mode)
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)   # no zero gradient of the saved tensor


def _autograd_backward(ctx, grad, _grad_saved):
    if grad is None:   # the output has no gradient (not materialised as zeros)
        return None, None, None, None, None
    needs = list(ctx.needs_input_grad[:2])
    grads = _band_mix_backward_op(grad, *ctx.saved_tensors, *ctx.args, needs)
    return (*(g if need else None for g, need in zip(grads, needs)), None, None, None)


_band_mix_op = register_op(f'{NAMESPACE}::{OP_NAME}', _band_mix_forward, _band_mix_fake, _autograd_backward,
                           _setup_context)
_band_mix_backward_op = register_op(f'{NAMESPACE}::{OP_NAME}_backward', _band_mix_backward, _band_mix_backward_fake,
                                    reject_double_backward(OP_NAME))


def _check_mask_mode(mask_mode, op):
    if mask_mode not in MASK_MODES:
        raise ValueError(f"{op}: mask_mode must be one of {MASK_MODES}, got {mask_mode!r}")


def check_frequency_band_mix_args(x, att, cutoffs, mask_mode):
    """Validate :func:`frequency_band_mix`'s arguments; errors name the argument and what it expects."""
    for name, t in (('x', x), ('att', att)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f'frequency_band_mix: {name} must be a torch.Tensor, got {type(t).__name__}')
        if t.dim() != 4 or not t.is_floating_point():
            raise ValueError(f'frequency_band_mix: {name} must be a 4-D floating tensor, got {t.dtype} '
                             f'shape {tuple(t.shape)}')
    if not cutoffs or any(not 0 < c < 0.5 for c in cutoffs) or any(a <= b for a, b in zip(cutoffs, cutoffs[1:])):
        raise ValueError(f'frequency_band_mix: cutoffs must be strictly decreasing values in (0, 0.5), got {cutoffs}')
    _check_mask_mode(mask_mode, 'frequency_band_mix')
    b, _, h, w = x.shape
    if tuple(att.shape) != (b, len(cutoffs), h, w):
        raise ValueError(f'frequency_band_mix: att must have shape (B, M, H, W) = {(b, len(cutoffs), h, w)}, '
                         f'got {tuple(att.shape)}')
