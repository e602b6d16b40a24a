"""Fourier Disjoint Weight (docs/fdconv.md): the spectrum parameterisation of a conv weight and its frequency bands.

A weight ``W`` (Co, Ci, k, k) is tiled into ``M`` (Co·k, Ci·k) with ``M[o·k+u, i·k+v] = W[o, i, u, v]``; the
parameter is ``rfft2(M) / s`` stored as real and imaginary parts, (Co·k, ⌊Ci·k/2⌋+1, 2), with
``s = spectrum_scale(Ci, Co)``. Coefficient (r, c) has radial frequency √(fr² + fc²) (fr = fftfreq(Co·k)[r],
fc = rfftfreq(Ci·k)[c]); sorted by it (the release's fp32 order, or an exact integer order: see
:func:`fourier_band_index`) the N coefficients are cut into ``kernel_num`` contiguous bands, lowest first.
"""
import functools

import torch

__all__ = ['BAND_ORDERS', 'spectrum_scale', 'weight_to_tiled', 'tiled_to_weight', 'weight_to_spectrum',
           'spectrum_to_weight', 'band_kernels', 'fourier_band_index']


def spectrum_scale(in_channels: int, out_channels: int) -> int:
    """The divisor s = max(⌊min(Ci, Co)/2⌋, 1) of the stored spectrum (the release's ⌊min/2⌋, kept ≥ 1)."""
    return max(min(in_channels, out_channels) // 2, 1)


def weight_to_tiled(weight: torch.Tensor) -> torch.Tensor:
    """(..., Co, Ci, k, k) -> (..., Co·k, Ci·k) tiled matrix M."""
    *lead, co, ci, k, _ = weight.shape
    return weight.transpose(-3, -2).reshape(*lead, co * k, ci * k)


def tiled_to_weight(tiled: torch.Tensor, out_channels: int, in_channels: int, kernel_size: int) -> torch.Tensor:
    """(..., Co·k, Ci·k) -> (..., Co, Ci, k, k), a view (not contiguous for k > 1)."""
    k = kernel_size
    return tiled.unflatten(-1, (in_channels, k)).unflatten(-3, (out_channels, k)).transpose(-3, -2)


def weight_to_spectrum(weight: torch.Tensor) -> torch.Tensor:
    """Convert a conv weight (Co, Ci, k, k) into the stored FDW spectrum (Co·k, ⌊Ci·k/2⌋+1, 2), float32."""
    if weight.dim() != 4 or weight.shape[-1] != weight.shape[-2]:
        raise ValueError(f'weight_to_spectrum: weight must be (Co, Ci, k, k), got shape {tuple(weight.shape)}')
    co, ci = weight.shape[:2]
    spectrum = torch.fft.rfft2(weight_to_tiled(weight.detach().float()))
    return torch.view_as_real(spectrum) / spectrum_scale(ci, co)


def spectrum_to_weight(spectrum: torch.Tensor, out_channels: int, in_channels: int, kernel_size: int) -> torch.Tensor:
    """Inverse of :func:`weight_to_spectrum`: the static weight (Co, Ci, k, k) that the spectrum encodes.

    It is the layer's kernel when every kernel attention equals 1/n (the identity initialisation).
    """
    k = kernel_size
    coefficients = torch.view_as_complex(spectrum.float().contiguous())
    tiled = torch.fft.irfft2(coefficients, s=(out_channels * k, in_channels * k))
    weight = tiled_to_weight(tiled, out_channels, in_channels, k) * spectrum_scale(in_channels, out_channels)
    return weight.contiguous()


def band_kernels(spectrum: torch.Tensor, out_channels: int, in_channels: int, kernel_size: int, kernel_num: int,
                 band_order: str = 'release') -> torch.Tensor:
    """The n candidate kernels W_j of an FDW spectrum: (n, Co, Ci, k, k) float32, each the inverse FFT of band j
    alone times α = s·n, so that their mean is the static kernel (every kernel attention 1/n)."""
    k = kernel_size
    band = fourier_band_index(out_channels * k, in_channels * k, kernel_num, band_order)
    coefficients = torch.view_as_complex(spectrum.detach().float().contiguous())
    masked = torch.stack([torch.where(band == j, coefficients, torch.zeros_like(coefficients))
                          for j in range(kernel_num)])
    tiled = torch.fft.irfft2(masked, s=(out_channels * k, in_channels * k))
    scale = spectrum_scale(in_channels, out_channels) * kernel_num
    return tiled_to_weight(tiled, out_channels, in_channels, k) * scale


def _signed_frequency_index(n: int) -> torch.Tensor:
    """Integer fftfreq: fftfreq(n) · n, i.e. [0, 1, …, ⌈n/2⌉−1, −⌊n/2⌋, …, −1]."""
    index = torch.arange(n, dtype=torch.int64)
    return torch.where(index < (n + 1) // 2, index, index - n)


BAND_ORDERS = ('release', 'exact')


def _release_sort_order(rows, cols):
    """The release's coefficient order: fp32 radii √(fftfreq² + rfftfreq²), PyTorch's default (unstable) CPU sort."""
    grid = torch.stack(torch.meshgrid(torch.fft.fftfreq(rows), torch.fft.rfftfreq(cols), indexing='ij'), -1)
    return torch.sort(torch.linalg.vector_norm(grid, dim=-1).flatten()).indices


def _exact_sort_order(rows, cols):
    """Exact integer radial keys (fr² + fc²)·rows²·cols² = kr²·cols² + kc²·rows², stable sort (ties row-major)."""
    kr = _signed_frequency_index(rows)
    kc = torch.arange(cols // 2 + 1, dtype=torch.int64)
    key = (kr.square() * cols * cols)[:, None] + (kc.square() * rows * rows)[None, :]
    return torch.sort(key.flatten(), stable=True).indices


@functools.lru_cache(maxsize=64)
def fourier_band_index(rows: int, cols: int, kernel_num: int, band_order: str = 'release') -> torch.Tensor:
    """Band of every rfft2 coefficient of a (rows, cols) real matrix: int64 (rows, ⌊cols/2⌋+1) in [0, kernel_num).

    Coefficients are sorted by radial frequency and sorted position p goes to band ⌊p·n/N⌋ (equal sizes when n
    divides N, as the release requires; sizes differing by at most one otherwise, where the release fails).

    - ``band_order='release'`` (default): the release's order — fp32 radii sorted by PyTorch's default CPU sort,
      which is not stable: coefficients with equal fp32 radii are ordered as its introsort leaves them. That is
      deterministic for a given PyTorch build (the release computes it on the CPU in the layer's constructor, so its
      checkpoints were trained with this order whatever the training device), and the test suite pins it against
      band maps recorded by running the release.
    - ``band_order='exact'``: exact integer keys and a stable sort — the same bands on every platform and version.
      It differs from ``'release'`` in a few coefficients per layer at tied / nearly tied radii (72–164 of
      ~10⁴–10⁶ coefficients at n = 64 for ResNet-50 shapes).

    Cached per arguments; treat the result as read-only.
    """
    if band_order not in BAND_ORDERS:
        raise ValueError(f'band_order must be one of {BAND_ORDERS}, got {band_order!r}')
    half = cols // 2 + 1
    total = rows * half
    if kernel_num > total:
        raise ValueError(f'kernel_num ({kernel_num}) must not exceed the number of Fourier coefficients '
                         f'({rows}×{half} = {total}) of the tiled ({rows}, {cols}) weight')
    order = (_release_sort_order if band_order == 'release' else _exact_sort_order)(rows, cols)
    band = torch.empty(total, dtype=torch.int64)
    band[order] = torch.arange(total, dtype=torch.int64) * kernel_num // total
    return band.view(rows, half)
