"""FLOP counts of mmdynconv's layers equal analytic formulas written here (conventions: mmdynconv.utils.complexity).

DDF: docs/ddf.md's ≈ 27·C MACs per pixel. FDConv: kernel assembly (spectral mixing, inverse rfft2 at 2.5·N·log2 N,
KSM local 1-D conv, the four modulation products), the per-sample conv, FBM (one rfft2 + M inverse rfft2 + M
modulations per image channel) and the KSM global branch.
"""
import math
from math import prod

import pytest
import torch
from torch_support import needs_custom_ops

import mmdynconv  # noqa: F401
from mmdynconv.layers import DDFConv, DDFUpsample, FDConv
from mmdynconv.utils import complexity
from mmdynconv.utils.complexity import flop_analyzer


@needs_custom_ops
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
    if (k, heads, stride) == (3, 1, 1):  # docs/ddf.md: 9C spatial + 2·9C combine-and-apply per output pixel
        assert ops['ddf'] + c * 9 * h * w == 27 * c * h * w


@needs_custom_ops
def test_ddf_up_flops_formula():
    c, k, s, h, w = 16, 3, 2, 8, 6
    mid, n = max(int(c * 0.2), 1), s * s
    ops = flop_analyzer(DDFUpsample(c, s, k).eval(), (torch.randn(1, c, h, w),)).by_operator()
    assert ops['ddf'] == n * 2 * k * k * c * h * w
    # per sub-pixel pair: depthwise 3x3 + 1x1 to k² spatial taps, SE branch
    assert ops['conv'] == n * (9 * c * h * w + c * k * k * h * w + c * mid + mid * c * k * k)
    assert ops['adaptive_avg_pool2d'] == c * h * w                # one pool shared by the S² channel branches
    assert sum(ops.values()) == ops['ddf'] + ops['conv'] + ops['adaptive_avg_pool2d']


def fft(n):
    return 2.5 * n * math.log2(n)


@needs_custom_ops
@pytest.mark.parametrize('ci,co,k,n,hw', [(24, 32, 3, 8, (10, 12)), (20, 40, 1, 4, (5, 7)), (24, 24, 1, 1, (4, 4))])
def test_fdconv_flops_formula(ci, co, k, n, hw):
    b, (h, w) = 2, hw
    layer = FDConv(ci, co, k, padding=k // 2, kernel_num=n).eval()
    ops = flop_analyzer(layer, (torch.randn(b, ci, h, w),)).by_operator()
    p = co * ci * k * k                                            # kernel entries
    kappa = layer.ksm_local.weight.shape[-1]
    spectral = co * k * (ci * k // 2 + 1) * 2 + fft(p)             # scale the spectrum by π·α, inverse rfft2
    assemblies = b if n > 1 else 1                                 # n = 1: one kernel for every sample
    assert ops['fdconv_kernel'] == int(assemblies * spectral + b * (p * kappa + 4 * p))
    assert ops['fdconv_conv'] == b * p * h * w
    width = max(ci // 16, 16)                                      # KSM global trunk
    heads = ci + co + (k * k if k > 1 else 0) + (n if n > 1 else 0)
    assert ops['linear'] == b * (ci * width + width * heads)
    assert ops['batch_norm'] == 2 * b * width                      # eval-mode BN1d with affine
    assert ops['layer_norm'] == 5 * b * ci                         # KSM local LayerNorm
    expected = {'fdconv_kernel', 'fdconv_conv', 'linear', 'batch_norm', 'layer_norm'}  # the pool (mean) is not counted
    if k == 3:                                                     # FBM: 3 bands, attention conv 3x3 ci -> 3
        assert ops['frequency_band_mix'] == int(b * ci * (4 * fft(h * w) + 3 * h * w))
        assert ops['conv'] == b * 3 * ci * 9 * h * w
        expected |= {'frequency_band_mix', 'conv'}
    assert set(ops) == expected


@needs_custom_ops
def test_fdconv_layers_in_sequence():
    """Two FBM layers of one size in one model trace (FBM's cached bases once broke the JIT trace)."""
    layers = torch.nn.Sequential(FDConv(24, 24, 3, padding=1, kernel_num=4), FDConv(24, 24, 3, padding=1, kernel_num=4))
    ops = flop_analyzer(layers.eval(), (torch.randn(1, 24, 8, 8),)).by_operator()
    assert ops['frequency_band_mix'] == 2 * int(24 * (4 * fft(64) + 3 * 64))


@needs_custom_ops
def test_fdconv_fallback_is_a_plain_conv():
    layer = FDConv(3, 16, 3, padding=1)                            # min(Ci, Co) <= 16: plain conv
    ops = flop_analyzer(layer, (torch.randn(1, 3, 8, 8),)).by_operator()
    assert dict(ops) == {'conv': 16 * 3 * 9 * 64}


@needs_custom_ops
@pytest.mark.parametrize('name,attentions', [('CondConv', 0), ('DYConv', 0), ('ODConv', 3)])
def test_kernel_mixture_baselines_flops_formula(name, attentions):
    from mmengine.registry import MODELS
    b, h, w = 2, 9, 7
    layer = MODELS.build(dict(type=name, in_channels=16, out_channels=24, kernel_size=3, padding=1)).eval()
    ops = flop_analyzer(layer, (torch.randn(b, 16, h, w),)).by_operator()
    experts, p = layer.weight.shape[0], prod(layer.weight.shape[1:])  # E, Co·Ci·k²
    assert ops['kernel_mixture'] == b * p * (experts + attentions)   # mix E kernels, scale by each attention
    assert ops['kernel_mixture_conv'] == b * p * h * w
    if name == 'CondConv':
        assert ops['linear'] == b * 16 * experts                     # routing fc


@needs_custom_ops
def test_upsampler_baselines_flops_formula():
    from mmengine.registry import MODELS
    b, c, h, w = 1, 16, 6, 5
    carafe = MODELS.build(dict(type='carafe_torch', channels=c, scale_factor=2, up_kernel=5)).eval()
    ops = flop_analyzer(carafe, (torch.randn(b, c, h, w),)).by_operator()
    assert ops['carafe'] == 25 * b * c * 2 * h * 2 * w                # k_up² per output element
    dysample = MODELS.build(dict(type='dysample', channels=c, scale_factor=2)).eval()
    ops = flop_analyzer(dysample, (torch.randn(b, c, h, w),)).by_operator()
    assert ops['grid_sampler'] == 4 * b * c * 2 * h * 2 * w           # bilinear: 4 per output element


def test_every_docs_table_row_is_a_loadable_variant_config():
    """docs/complexity.md's rows: every declared variant applied to mmdet's Faster R-CNN R50-FPN config."""
    import os.path as osp
    import sys
    sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
    from experiments.docs_tables.complexity_table import rows, variant_config
    from mmdynconv.layers.declarations import DECLARATIONS
    table = rows()
    variants = {variant for _, variant, *_ in table}
    assert variants == {None} | {d.variant.name for d in DECLARATIONS.values()}
    for _, variant, *_ in table:
        assert variant_config(variant).model.type == 'FasterRCNN'
    assert variant_config('DY-Conv').model.backbone.block_conv_cfg == dict(type='DYConv', num_kernels=4)


def test_flop_counting_on_an_older_torch_says_what_it_needs(monkeypatch):
    monkeypatch.setattr(complexity, 'HAS_CUSTOM_OP', False)
    with pytest.raises(RuntimeError, match='custom-op nodes'):
        flop_analyzer(DDFConv(4, 4, 3).eval(), (torch.randn(1, 4, 5, 5),))


def test_docs_complexity_has_a_row_per_variant():
    """docs/complexity.md is stale when a declared variant has no row: rerun python tools/get_flops.py --compare."""
    import os.path as osp

    from experiments.docs_tables.complexity_table import rows
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    text = open(osp.join(root, 'docs', 'complexity.md')).read()
    missing = [label for label, *_ in rows() if f'| {label} |' not in text]
    assert not missing, f'docs/complexity.md lacks {missing}: run python tools/get_flops.py --compare'
