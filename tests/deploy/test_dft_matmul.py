"""The matrix-product FFTs of the ONNX export equal ATen's FFT ops (float64, every normalisation, odd and even
lengths, one or two dimensions, any imaginary parts on the DC / Nyquist coefficients of an inverse)."""
import pytest
import torch

from mmdynconv.deploy.dft_matmul import fft_c2c, fft_c2r, fft_r2c

CASES = [((2, 3, 12, 12), [2, 3]), ((1, 96, 96), [1, 2]), ((2, 5, 7, 9), [2, 3]), ((3, 8, 11), [1]),
         ((2, 6, 10, 4), [1, 2]), ((2, 4, 6), [0, 2])]


@pytest.mark.parametrize('shape,dims', CASES)
@pytest.mark.parametrize('norm', [0, 1, 2])
def test_matches_aten(shape, dims, norm):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64, generator=gen)
    for onesided in (True, False):
        torch.testing.assert_close(fft_r2c(x, dims, norm, onesided), torch.ops.aten._fft_r2c(x, dims, norm, onesided),
                                   rtol=1e-10, atol=1e-10)
    half = torch.ops.aten._fft_r2c(x, dims, 0, True)
    half = half + 0.3j * torch.randn(half.shape, dtype=torch.float64, generator=gen)
    n = shape[dims[-1]]
    torch.testing.assert_close(fft_c2r(half, dims, norm, n), torch.ops.aten._fft_c2r(half, dims, norm, n),
                               rtol=1e-10, atol=1e-10)
    for forward in (True, False):
        torch.testing.assert_close(fft_c2c(half, dims, norm, forward),
                                   torch.ops.aten._fft_c2c(half, dims, norm, forward), rtol=1e-10, atol=1e-10)
