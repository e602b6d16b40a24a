"""FLOP counts include DDF's custom op and match the analytic formula of SPEC §1.4 (≈ 27·C MACs per pixel)."""
import pytest
import torch

import mmdynconv  # noqa: F401
from mmdynconv.layers import DDFConv, DDFUpsample
from mmdynconv.utils.complexity import flop_analyzer


@pytest.mark.parametrize('c,k,stride,heads', [(16, 3, 1, 1), (32, 5, 2, 2)])
def test_ddf_conv_flops_formula(c, k, stride, heads):
    h, w = 20, 15
    ho, wo = -(-h // stride), -(-w // stride)
    mid = max(int(c * 0.2), 1)
    analyzer = flop_analyzer(DDFConv(c, c, k, stride=stride, heads=heads).eval(), (torch.randn(1, c, h, w),))
    ops = analyzer.by_operator()
    assert ops['ddf'] == 2 * k * k * c * ho * wo  # combine + apply
    assert ops['conv'] == c * heads * k * k * ho * wo + c * mid + mid * c * k * k  # spatial 1x1 + SE branch
    assert ops['adaptive_avg_pool2d'] == c * h * w
    if (k, heads, stride) == (3, 1, 1):  # SPEC §1.4: 9C spatial + 2·9C combine-and-apply per output pixel
        assert ops['ddf'] + c * 9 * h * w == 27 * c * h * w


def test_ddf_up_flops_formula():
    c, k, s, h, w = 16, 3, 2, 8, 6
    mid, n = max(int(c * 0.2), 1), s * s
    ops = flop_analyzer(DDFUpsample(c, s, k).eval(), (torch.randn(1, c, h, w),)).by_operator()
    assert ops['ddf'] == n * 2 * k * k * c * h * w
    assert ops['conv'] == n * (9 * c * h * w + c * k * k * h * w + c * mid + mid * c * k * k)
