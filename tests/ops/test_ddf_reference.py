"""The pure-PyTorch DDF reference against an independent unfold oracle (itself checked against the definition)."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from mmdynconv.ops import ddf, ddf_reference


def _ddf_loops(x, fc, fs, k, s, d, combine):
    """docs/ddf.md written as explicit loops (tiny inputs only)."""
    B, C, H, W = x.shape
    G, (Ho, Wo), r = fs.shape[1] // (k * k), fs.shape[2:], (k - 1) // 2
    out = torch.zeros(B, C, Ho, Wo, dtype=x.dtype)
    for b, c, y, xo, i, j in itertools.product(range(B), range(C), range(Ho), range(Wo), range(k), range(k)):
        iy, ix = y * s + (i - r) * d, xo * s + (j - r) * d
        if 0 <= iy < H and 0 <= ix < W:
            f_s, f_c = fs[b, (c // (C // G)) * k * k + i * k + j, y, xo], fc[b, c, i, j]
            out[b, c, y, xo] += (f_s * f_c if combine == 'mul' else f_s + f_c) * x[b, c, iy, ix]
    return out


def _check_against_oracle(h, B, C, H, W, k, s, d, heads, combine, dtype=torch.float64, layout='contiguous'):
    inputs = h.make_inputs(B, C, H, W, k, s, heads, dtype, layout)
    out = ddf(*inputs, k, s, d, combine, backend='reference')
    assert out.dtype == dtype and out.shape == (B, C, (H - 1) // s + 1, (W - 1) // s + 1)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out)
    grads = torch.autograd.grad(out, inputs, grad)
    expected, expected_grads = h.oracle_with_grads(inputs, grad, k, s, d, combine)
    h.assert_scaled_close(out, expected, dtype, 'out')
    for name, g, e in zip(('grad x', 'grad channel_filter', 'grad spatial_filter'), grads, expected_grads):
        assert g.dtype == dtype
        h.assert_scaled_close(g, e, dtype, name)
    return out


@pytest.mark.parametrize('combine', ['mul', 'add'])
def test_unfold_oracle_matches_definition(ddf_helpers, combine):
    x, fc, fs = ddf_helpers.make_inputs(1, 4, 5, 4, 3, stride=2, heads=2, dtype=torch.float64)
    expected = _ddf_loops(x.detach().cpu(), fc.detach().cpu(), fs.detach().cpu(), 3, 2, 2, combine)
    torch.testing.assert_close(ddf_helpers.ddf_unfold(x, fc, fs, 3, 2, 2, combine).detach().cpu(), expected)


@pytest.mark.parametrize('stride,dilation', [(1, 1), (2, 2), (3, 1)])
def test_unit_spatial_filter_is_depthwise_conv(ddf_helpers, stride, dilation):
    x, fc, fs = ddf_helpers.make_inputs(1, 6, 9, 7, 5, stride, dtype=torch.float64)
    out = ddf(x, fc, torch.ones_like(fs), 5, stride, dilation, backend='reference')
    conv = F.conv2d(x, fc[0].unsqueeze(1), stride=stride, padding=2 * dilation, dilation=dilation, groups=6)
    torch.testing.assert_close(out, conv)


@pytest.mark.parametrize('stride,dilation,heads,combine',
                         list(itertools.product([1, 2, 3], [1, 2, 3], [1, 2, 4], ['mul', 'add'])))
def test_matches_oracle_stride_dilation_heads(ddf_helpers, stride, dilation, heads, combine):
    _check_against_oracle(ddf_helpers, 2, 4, 7, 9, 3, stride, dilation, heads, combine)


@pytest.mark.parametrize('k', [1, 3, 5, 7, 9, 11, 13, 15])
def test_matches_oracle_kernel_sizes(ddf_helpers, k):
    _check_against_oracle(ddf_helpers, 2, 4, 11, 10, k, 1 + k % 3, 1 + k % 2, 2, 'mul' if k % 4 == 1 else 'add')


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last', 'strided'])
def test_dtypes_and_layouts(ddf_helpers, dtype, layout):
    out = _check_against_oracle(ddf_helpers, 2, 6, 9, 7, 3, 2, 1, 3, 'mul', dtype, layout)
    assert out.is_contiguous(memory_format=torch.channels_last) == (layout == 'channels_last')


@pytest.mark.parametrize('stride,heads,combine,dtype,layout', [
    (1, 1, 'mul', torch.float64, 'contiguous'), (2, 2, 'add', torch.float64, 'strided'),
    (1, 2, 'add', torch.float32, 'channels_last'), (2, 1, 'mul', torch.bfloat16, 'contiguous')])
def test_channels_last_compute_path(ddf_helpers, stride, heads, combine, dtype, layout):
    """Many channels per head on a narrow map: the reference computes in channels-last memory."""
    assert ddf_reference.compute_layout(16 // heads, (3 - 1) // stride + 1) == torch.channels_last
    _check_against_oracle(ddf_helpers, 2, 16, 9, 3, 3, stride, 2, heads, combine, dtype, layout)


@pytest.mark.parametrize('k,stride,dilation,heads,C,W,combine', [
    (3, 1, 1, 1, 4, 6, 'mul'), (3, 2, 2, 2, 4, 6, 'add'), (5, 3, 1, 4, 4, 6, 'mul'), (1, 2, 1, 2, 4, 6, 'add'),
    (3, 1, 2, 1, 8, 3, 'mul'), (3, 2, 1, 2, 8, 3, 'add')])  # the last two compute in channels-last memory
def test_gradcheck(ddf_helpers, k, stride, dilation, heads, C, W, combine):
    inputs = ddf_helpers.make_inputs(1, C, 5, W, k, stride, heads, torch.float64, seed=3)
    assert torch.autograd.gradcheck(lambda *t: ddf(*t, k, stride, dilation, combine, backend='reference'), inputs)


def test_gradient_of_one_input_only(ddf_helpers):
    x, fc, fs = ddf_helpers.make_inputs(2, 4, 7, 9, 3, 1, 2, torch.float64)
    out = ddf(x, fc.detach(), fs.detach(), 3, backend='reference')
    (gx,) = torch.autograd.grad(out.sum(), x)
    _, (ex, _, _) = ddf_helpers.oracle_with_grads((x, fc, fs), torch.ones_like(out), 3, 1, 1, 'mul')
    torch.testing.assert_close(gx, ex)


@pytest.mark.parametrize('shape', [(0, 4, 5, 5), (2, 0, 5, 5), (2, 4, 0, 5)])
def test_empty_inputs(ddf_helpers, shape):
    B, C, H, W = shape
    x, fc, fs = ddf_helpers.make_inputs(B, C, H, W, 3, 2, 1, torch.float32)
    out = ddf(x, fc, fs, 3, 2, backend='reference')
    assert out.shape == (B, C, (H - 1) // 2 + 1, (W - 1) // 2 + 1)
    out.sum().backward()
    assert x.grad.shape == x.shape and fc.grad.shape == fc.shape and fs.grad.shape == fs.shape
