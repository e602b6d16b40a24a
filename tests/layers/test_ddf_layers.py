"""DDF conv layer ('DDF') and DDF-Up upsampler ('ddf_up'): docs/ddf.md semantics, registry, edge cases, errors."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer, build_upsample_layer
from mmengine.registry import DefaultScope
from torch_support import needs_openmmlab

import mmdynconv  # noqa: F401  (registers the layers)
from mmdynconv.layers import DDFConv, DDFUpsample, FilterNorm


def naive_ddf(x, fc, fs, k, stride, dilation, combine):
    """Independent oracle: unfold + explicit combined kernel K (B, C, k², Ho, Wo)."""
    b, c, h, w = x.shape
    r = (k - 1) // 2 * dilation
    cols = F.unfold(x, k, dilation=dilation, padding=r, stride=stride)
    ho, wo = fs.shape[2:]
    cols = cols.view(b, c, k * k, ho, wo)
    heads = fs.shape[1] // (k * k)
    fs_c = fs.view(b, heads, 1, k * k, ho, wo).expand(b, heads, c // heads, k * k, ho, wo).reshape(b, c, k * k, ho, wo)
    fc_c = fc.reshape(b, c, k * k, 1, 1)
    kernel = fs_c * fc_c if combine == 'mul' else fs_c + fc_c
    return (kernel * cols).sum(2)


def standardise(f, n, k):
    """Per-filter standardisation over k² taps (FilterNorm without the scale)."""
    b, _, h, w = f.shape
    g = f.reshape(b, n, k * k, h, w)
    return ((g - g.mean(2, keepdim=True)) / (g.std(2, keepdim=True) + 1e-10)).reshape(b, n * k * k, h, w)


@pytest.mark.parametrize('combine', ['mul', 'add'])
@pytest.mark.parametrize('stride,dilation,heads', [(1, 1, 1), (2, 1, 2), (1, 2, 4), (3, 1, 1)])
def test_ddf_conv_matches_spec(combine, stride, dilation, heads):
    torch.manual_seed(0)
    c, k = 16, 3  # mid = 3 SE channels (with 1, a dead ReLU can zero the channel filter)
    layer = DDFConv(c, c, k, stride=stride, dilation=dilation, heads=heads, kernel_combine=combine, bias=True)
    torch.nn.init.normal_(layer.bias)
    x = torch.randn(2, c, 13, 10, dtype=torch.float64)
    layer = layer.double()
    fs = standardise(layer.spatial_conv(x), heads, k) * (math.sqrt(2) / k)
    br = layer.channel_branch
    mid = F.relu(br.squeeze(x.mean((2, 3), keepdim=True)))
    fc = standardise(br.expand(mid), c, k) * br.norm.std.view(1, -1, 1, 1)
    expected = naive_ddf(x, fc.reshape(2, c, k, k), fs, k, stride, dilation, combine) + layer.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(layer(x), expected)


def test_ddf_conv_odd_size_stride2_gives_conv_size():
    layer = DDFConv(4, 4, 3, stride=2, padding=1)
    conv = torch.nn.Conv2d(4, 4, 3, stride=2, padding=1)
    x = torch.randn(1, 4, 33, 47)
    assert layer(x).shape == conv(x).shape == (1, 4, 17, 24)
    layer = DDFConv(4, 4, 5, stride=2, dilation=2, padding=4)
    assert layer(x).shape == torch.nn.Conv2d(4, 4, 5, stride=2, dilation=2, padding=4)(x).shape


@pytest.mark.parametrize('nonlinearity,gain', [('relu', math.sqrt(2)), ('linear', 1.0)])
def test_filter_norm_statistics(nonlinearity, gain):
    k, heads = 3, 2
    fn = FilterNorm(heads, k, 'spatial', nonlinearity)
    out = fn(torch.randn(2, heads * k * k, 5, 7) * 3 + 1).reshape(2, heads, k * k, 5, 7)
    torch.testing.assert_close(out.mean(2), torch.zeros(2, heads, 5, 7), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.std(2), torch.full((2, heads, 5, 7), gain / k), atol=1e-5, rtol=1e-5)
    ch = FilterNorm(4, k, 'channel', nonlinearity)
    assert ch.std.shape == (4 * k * k,)
    out = ch(torch.randn(3, 4 * k * k, 1, 1)) / ch.std.view(1, -1, 1, 1)
    torch.testing.assert_close(out.reshape(3, 4, k * k).std(2), torch.ones(3, 4), atol=1e-5, rtol=1e-5)
    layer = DDFConv(6, 6, 3, heads=3)
    fs = layer.spatial_norm(layer.spatial_conv(torch.randn(2, 6, 9, 9))).reshape(2, 3, 9, 9, 9)
    torch.testing.assert_close(fs.std(2), torch.full((2, 3, 9, 9), math.sqrt(2) / 3), atol=1e-5, rtol=1e-5)


def test_ddf_up_is_independent_ddfs_then_pixel_shuffle():
    torch.manual_seed(0)
    c, k, s, heads = 10, 3, 2, 2
    up = DDFUpsample(c, s, k, heads=heads).double()
    x = torch.randn(2, c, 5, 6, dtype=torch.float64)
    n, gk2, mid = s * s, heads * k * k, max(int(c * 0.2), 1)
    outs = []
    for i in range(n):  # pair i built from its own slice of every grouped weight
        dw_w = up.spatial_dw.weight.view(c, n, 1, 3, 3)[:, i]
        dw_b = up.spatial_dw.bias.view(c, n)[:, i]
        g = F.conv2d(x, dw_w, dw_b, padding=1, groups=c)
        fs = F.conv2d(g, up.spatial_pw.weight[i * gk2:(i + 1) * gk2], up.spatial_pw.bias[i * gk2:(i + 1) * gk2])
        fs = standardise(fs, heads, k) / k
        sq = F.conv2d(x.mean((2, 3), keepdim=True), up.channel_squeeze.weight[i * mid:(i + 1) * mid],
                      up.channel_squeeze.bias[i * mid:(i + 1) * mid])
        ck2 = c * k * k
        fc = F.conv2d(F.relu(sq), up.channel_expand.weight[i * ck2:(i + 1) * ck2],
                      up.channel_expand.bias[i * ck2:(i + 1) * ck2])
        fc = standardise(fc, c, k) * up.channel_norm.std[i * ck2:(i + 1) * ck2].view(1, -1, 1, 1)
        outs.append(naive_ddf(x, fc.reshape(2, c, k, k), fs, k, 1, 1, 'mul'))
    expected = torch.empty(2, c, s * 5, s * 6, dtype=torch.float64)
    for i, o in enumerate(outs):
        expected[:, :, i // s::s, i % s::s] = o
    torch.testing.assert_close(up(x), expected)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_ddf_up_scales(scale):
    up = DDFUpsample(6, scale, 5, heads=3, kernel_combine='add')
    assert up(torch.randn(1, 6, 7, 5)).shape == (1, 6, 7 * scale, 5 * scale)


@pytest.mark.parametrize('where', ['input', 'output'])
def test_ddf_up_guided(where):
    torch.manual_seed(0)
    up = DDFUpsample(4, 2, guidance_channels=3, guidance_at=where)
    x = torch.randn(2, 4, 6, 5, requires_grad=True)
    size = (6, 5) if where == 'input' else (12, 10)
    guide = torch.randn(2, 3, *size, requires_grad=True)
    y = up(x, guide)
    assert y.shape == (2, 4, 12, 10)
    y.square().sum().backward()
    assert guide.grad.abs().sum() > 0 and x.grad.abs().sum() > 0
    other = guide.detach().clone()
    other[:, :, :2] += 5  # guidance changes the filters, hence the output
    assert not torch.allclose(up(x, other), y)
    with pytest.raises(ValueError, match='guidance must have shape'):
        up(x, torch.randn(1, 3, *size))  # wrong batch size
    with pytest.raises(ValueError, match='guidance must have shape'):
        up(x, torch.randn(2, 5, *size))  # wrong channel count
    with pytest.raises(ValueError, match='guidance must have shape'):
        up(x)
    with pytest.raises(ValueError, match='without guidance_channels'):
        DDFUpsample(4, 2)(x, guide)


@needs_openmmlab
@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_layers_build_in_scope(scope):
    import importlib
    importlib.import_module(f'{scope}.registry')
    with DefaultScope.overwrite_default_scope(scope):
        conv = build_conv_layer(dict(type='DDF', kernel_combine='add'), 8, 8, 3, stride=2, padding=1, dilation=1,
                                bias=False)
        up = build_upsample_layer(dict(type='ddf_up', scale_factor=2), channels=8)
    assert isinstance(conv, DDFConv) and conv.kernel_combine == 'add' and conv.stride == 2
    assert isinstance(up, DDFUpsample)


def test_state_dict_round_trip():
    for make in (lambda: DDFConv(8, 8, 3, heads=2, bias=True), lambda: DDFUpsample(8, 2, guidance_channels=3)):
        torch.manual_seed(0)
        a = make()
        torch.manual_seed(1)
        b = make()
        b.load_state_dict(a.state_dict())
        x, g = torch.randn(1, 8, 6, 6), torch.randn(1, 3, 6, 6)
        args = (x,) if isinstance(a, DDFConv) else (x, g)
        torch.testing.assert_close(a(*args), b(*args), rtol=0, atol=0)


@needs_openmmlab
def test_loads_the_authors_ddfpack_layout():
    from mmdet.models.backbones import ResNet
    from mmengine.runner.checkpoint import load_state_dict
    torch.manual_seed(0)
    kwargs = dict(depth=50, base_channels=16, dcn=dict(type='DDF', fallback_on_stride=False),
                  stage_with_dcn=(True,) * 4)
    src, dst = ResNet(**kwargs), ResNet(**kwargs)
    src.eval()
    dst.eval()
    renames = {'spatial_conv.': 'spatial_branch.0.', 'channel_branch.squeeze.': 'channel_branch.1.',
               'channel_branch.expand.': 'channel_branch.3.', 'channel_branch.norm.std': 'channel_branch.4.std'}
    released = {}
    for key, value in src.state_dict().items():
        for ours, theirs in renames.items():
            key = key.replace(ours, theirs)
        released['module.' + key] = value  # a DDP checkpoint, as timm's train.py writes
    released['fc.weight'] = torch.zeros(1000, 2048)
    assert any('spatial_branch.0.weight' in k for k in released)
    load_state_dict(dst, {k[len('module.'):]: v for k, v in released.items()}, strict=False)
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(src(x), dst(x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_batch_size_one_training_step():
    torch.manual_seed(0)
    layer = DDFConv(16, 16, 3, stride=2, bias=True).train()
    up = DDFUpsample(16, 2).train()
    opt = torch.optim.SGD(list(layer.parameters()) + list(up.parameters()), lr=0.1)
    x = torch.randn(1, 16, 9, 9)
    before = up(layer(x)).square().mean()
    before.backward()
    opt.step()
    for p in list(layer.parameters()) + list(up.parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert before > 0 and up(layer(x)).square().mean() != before


def test_cpu_autocast_bf16():
    layer, up = DDFConv(8, 8, 3), DDFUpsample(8, 2)
    x = torch.randn(2, 8, 10, 10)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = up(layer(torch.nn.functional.conv2d(x, torch.randn(8, 8, 1, 1))))
    assert y.dtype == torch.bfloat16 and y.shape == (2, 8, 20, 20) and torch.isfinite(y.float()).all()
    y.float().sum().backward()
    ref = up(layer(torch.nn.functional.conv2d(x, torch.randn(8, 8, 1, 1))))
    assert ref.dtype == torch.float32


@pytest.mark.parametrize('kwargs,match', [
    (dict(in_channels=8, out_channels=16), 'out_channels must equal in_channels'),
    (dict(kernel_size=4), 'kernel_size must be an odd int >= 3'),
    (dict(kernel_size=1), 'kernel_size must be an odd int >= 3'),
    (dict(padding=2), 'padding is implied'),
    (dict(groups=2), 'groups must be 1 or in_channels'),
    (dict(heads=3), 'heads must be a positive int dividing'),
    (dict(kernel_combine='max'), "kernel_combine must be 'mul' or 'add'"),
    (dict(stride=(1, 2)), 'stride must be an int or a pair of equal ints'),
    (dict(se_ratio=0), 'se_ratio must be a positive number'),
])
def test_ddf_conv_bad_arguments(kwargs, match):
    args = dict(in_channels=8, out_channels=8, kernel_size=3)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        DDFConv(**args)


@pytest.mark.parametrize('kwargs,match', [
    (dict(scale_factor=1), 'scale_factor must be an integer >= 2'),
    (dict(scale_factor=1.5), 'scale_factor must be an integer >= 2'),
    (dict(kernel_size=2), 'kernel_size must be an odd int >= 3'),
    (dict(guidance_at='middle', guidance_channels=3), "guidance_at must be 'input' or 'output'"),
    (dict(guidance_channels=0), 'guidance_channels must be None or a positive int'),
])
def test_ddf_up_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DDFUpsample(8, **kwargs)


def test_wrong_input_channels():
    with pytest.raises(ValueError, match=r'input must be \(B, 8, H, W\)'):
        DDFConv(8, 8)(torch.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match=r'input must be \(B, 8, H, W\)'):
        DDFUpsample(8)(torch.randn(1, 4, 5, 5))
