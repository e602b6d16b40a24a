"""The shared per-sample conv path against a loop of convolutions: values and gradients, groups, strides,
dilations, 1×1 fast path, chunks of samples; the conv-geometry check."""
import pytest
import torch
import torch.nn.functional as F

from mmdynconv.ops.per_sample_conv import (
    ConvGeometry,
    ConvShape,
    check_conv_geometry,
    per_sample_conv_backward,
    per_sample_conv_forward,
)


def _close(actual, expected, tol):
    assert actual.shape == expected.shape
    scale = expected.double().abs().max().clamp_min(1e-12)
    err = float((actual.double() - expected.double()).abs().max() / scale)
    assert err < tol, err


@pytest.mark.parametrize('b,ci,co,k,stride,padding,dilation,groups', [
    (3, 4, 6, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (2, 6, 4, (3, 2), (2, 1), (1, 0), (2, 1), 2),
    (2, 6, 6, (1, 1), (2, 2), (0, 0), (1, 1), 3),      # 1×1 matmul path with stride
    (2, 4, 8, (1, 1), (1, 1), (1, 1), (1, 1), 1),      # 1×1 with padding: conv path
    (1, 5, 5, (5, 5), (3, 3), (2, 2), (1, 1), 5),      # depthwise
])
def test_per_sample_conv_matches_a_loop_of_convs(b, ci, co, k, stride, padding, dilation, groups):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b, ci, 9, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(b, co, ci // groups, *k, generator=gen, dtype=torch.float64, requires_grad=True)
    s = ConvShape(x.shape, co, k, stride, padding, dilation, groups)
    expected = torch.cat([F.conv2d(x[i:i + 1], w[i], None, stride, padding, dilation, groups) for i in range(b)])
    grad = torch.randn(expected.shape, generator=gen, dtype=torch.float64)
    gx, gw = torch.autograd.grad(expected, (x, w), grad)
    rows = slice(0, b)
    # kernels passed in the (b, Co, kh, kw, Cig) layout: a permuted view of the usual layout, or a contiguous copy
    for kernels in (w.detach().permute(0, 1, 3, 4, 2), w.detach().permute(0, 1, 3, 4, 2).contiguous()):
        y = per_sample_conv_forward(x.detach(), kernels, rows, s)
        assert y.is_contiguous() and (s.ho, s.wo) == tuple(expected.shape[2:])
        _close(y, expected, 1e-12)
        gi, gk = per_sample_conv_backward(x.detach(), rows, kernels, grad, grad, s)
        _close(gi, gx, 1e-12)
        _close(gk.permute(0, 1, 4, 2, 3), gw, 1e-12)
    gi, _ = per_sample_conv_backward(x.detach(), rows, kernels, grad, None, s)
    _, gk = per_sample_conv_backward(x.detach(), rows, None, None, grad, s)
    _close(gi, gx, 1e-12)
    _close(gk.permute(0, 1, 4, 2, 3), gw, 1e-12)
    part = slice(1, b)  # a chunk of samples
    if b > 1:
        _close(per_sample_conv_forward(x.detach(), kernels[part], part, s), expected[part], 1e-12)


def test_check_conv_geometry_names_the_argument():
    assert check_conv_geometry('op', 2, (1, 0), 1, 3) == ConvGeometry((2, 2), (1, 0), (1, 1), 3)
    assert ConvShape((2, 4, 9, 7), 6, (3, 3), *check_conv_geometry('op', 2, 1, 1)).ho == 5
    with pytest.raises(ValueError, match='op: padding must be >= 0'):
        check_conv_geometry('op', 1, -1, 1)
    with pytest.raises(TypeError, match='op: stride must be an int'):
        check_conv_geometry('op', 1.5, 0, 1)
    with pytest.raises(ValueError, match='op: dilation must be an int or a pair'):
        check_conv_geometry('op', 1, 0, (1, 1, 1))
