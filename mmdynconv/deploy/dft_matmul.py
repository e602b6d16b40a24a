"""Real-valued matrix-product forms of ``aten._fft_r2c`` / ``_fft_c2r`` / ``_fft_c2c`` for the ONNX export.

ONNX Runtime's ``DFT`` kernel sums non-power-of-two lengths directly and loses accuracy with the length: one exported
FDConv 3×3 64→64 layer (an inverse FFT of 192×192 per sample) differed from float64 by 3e-5 of its output through
``DFT`` against 6e-7 for PyTorch's FFT, which compounds over a network's 48 FDConv layers. Written as products with
cosine / sine matrices (exact angles from ``(t·k) mod n``, built in float64), the transforms become ``MatMul`` nodes,
which ONNX Runtime accumulates as accurately as PyTorch. Complex tensors enter and leave through
``view_as_real`` / ``view_as_complex`` (the exporter's own complex representation); the products are O(n²) per
transformed line, fine at the feature and kernel sizes these models transform.

``normalization`` follows ATen: 0 none, 1 by 1/√N, 2 by 1/N (N the product of the signal sizes).
"""
import math

import torch

__all__ = ['fft_c2c', 'fft_r2c', 'fft_c2r']


def _angles(n_rows, n_cols, n, dtype, device):
    """cos and sin of 2π·(r·c mod n)/n, (n_rows, n_cols), computed in float64, returned in ``dtype``."""
    r = torch.arange(n_rows, dtype=torch.int64, device=device).unsqueeze(1)
    c = torch.arange(n_cols, dtype=torch.int64, device=device).unsqueeze(0)
    theta = torch.remainder(r * c, n).to(torch.float64) * (2 * math.pi / n)
    return torch.cos(theta).to(dtype), torch.sin(theta).to(dtype)


def _along(t, dim, fn):
    return fn(t.movedim(dim, -1)).movedim(-1, dim)


def _c2c_last(re, im, forward):
    """Complex DFT of (re, im) along the last dimension, e^{∓2πi tk/n}."""
    n = re.shape[-1]
    cos, sin = _angles(n, n, n, re.dtype, re.device)
    if forward:
        return re @ cos + im @ sin, im @ cos - re @ sin
    return re @ cos - im @ sin, im @ cos + re @ sin


def _scale(tensors, sizes, normalization):
    if normalization == 0:
        return tensors
    n = math.prod(sizes)
    factor = 1 / math.sqrt(n) if normalization == 1 else 1 / n
    return [t * factor for t in tensors]


def _complex_parts(x):
    pair = torch.view_as_real(x)
    return pair[..., 0], pair[..., 1]


def _to_complex(re, im):
    return torch.view_as_complex(torch.stack((re, im), -1).contiguous())


def _c2c_dims(re, im, dims, forward):
    for d in dims:
        re, im = (t.movedim(-1, d) for t in _c2c_last(re.movedim(d, -1), im.movedim(d, -1), forward))
    return re, im


def fft_c2c(x, dim, normalization, forward):
    """``aten._fft_c2c``: complex (…) → complex (…), along ``dim``."""
    re, im = _c2c_dims(*_complex_parts(x), list(dim), forward)
    return _to_complex(*_scale([re, im], [x.shape[d] for d in dim], normalization))


def fft_r2c(x, dim, normalization, onesided):
    """``aten._fft_r2c``: real → complex; the last of ``dim`` keeps n//2 + 1 coefficients when ``onesided``."""
    dims = [d % x.dim() for d in dim]
    last = dims[-1]
    n = x.shape[last]
    m = n // 2 + 1 if onesided else n
    cos, sin = _angles(n, m, n, x.dtype, x.device)
    re = _along(x, last, lambda t: t @ cos)
    im = _along(x, last, lambda t: -(t @ sin))
    re, im = _c2c_dims(re, im, dims[:-1], forward=True)
    return _to_complex(*_scale([re, im], [x.shape[d] for d in dims], normalization))


def fft_c2r(x, dim, normalization, last_dim_size):
    """``aten._fft_c2r``: onesided complex → real of length ``last_dim_size`` along the last of ``dim``.

    As pocketfft (and so ``torch.fft.irfft``), the imaginary parts of the zero and (for even lengths) Nyquist
    coefficients are ignored, and coefficients beyond n//2 + 1 are dropped.
    """
    dims = [d % x.dim() for d in dim]
    re, im = _c2c_dims(*_complex_parts(x), dims[:-1], forward=False)
    last, n = dims[-1], int(last_dim_size)
    m = min(re.shape[last], n // 2 + 1)
    re, im = (t.narrow(last, 0, m) for t in (re, im))
    cos, sin = _angles(m, n, n, re.dtype, re.device)
    k = torch.arange(m, device=re.device).unsqueeze(1)
    single = (k == 0) | ((k == n // 2) & (n % 2 == 0))        # the DC and Nyquist terms count once, the others twice
    weight = torch.where(single, 1.0, 2.0).to(re.dtype)
    y = _along(re, last, lambda t: t @ (cos * weight)) - _along(im, last, lambda t: t @ (sin * weight))
    sizes = [x.shape[d] for d in dims[:-1]] + [n]
    return _scale([y], sizes, normalization)[0]
