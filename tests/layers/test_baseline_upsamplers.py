"""'carafe_torch' and 'dysample' upsamplers against oracles written here (values and gradients of the input and every
parameter), mmcv CARAFEPack checkpoint compatibility, registry builds in both scopes and through UpsamplerFPN,
autocast, and errors."""
import importlib

import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn import build_upsample_layer
from mmengine.registry import DefaultScope
from torch_support import AUTOCAST_DTYPES, needs_custom_ops, needs_openmmlab

import mmdynconv  # noqa: F401  (registers the layers)
from mmdynconv.layers import CARAFETorch, DySample
from mmdynconv.models.necks import UpsamplerFPN


def carafe_oracle(layer, x):
    """CARAFE from its definition: encode, pixel-shuffle, softmax over k² per group, unfold-reassemble."""
    k, g, s = layer.up_kernel, layer.up_group, layer.scale_factor
    enc = layer.content_encoder
    mask = F.conv2d(F.conv2d(x, layer.channel_compressor.weight, layer.channel_compressor.bias), enc.weight, enc.bias,
                    padding=enc.padding, dilation=enc.dilation)
    mask = F.pixel_shuffle(mask, s)
    b, _, ho, wo = mask.shape
    mask = mask.view(b, g, k * k, ho, wo)
    mask = torch.exp(mask - mask.amax(2, keepdim=True))
    mask = mask / mask.sum(2, keepdim=True)
    c, h, w = x.shape[1:]
    cols = F.unfold(x, k, padding=(k - 1) // 2).view(b, g, c // g, k * k, h, w)
    cols = cols.repeat_interleave(s, 4).repeat_interleave(s, 5)
    return (cols * mask.unsqueeze(2)).sum(3).view(b, c, ho, wo)


def dysample_oracle(layer, x):
    """DySample 'lp' from its definition: offsets in input pixels, then explicit bilinear sampling with border
    clamping at pixel (w + o_x, h + o_y) for output pixel (S·h + p, S·w + q)."""
    b, c, h, w = x.shape
    s, g = layer.scale_factor, layer.groups
    raw = F.conv2d(x, layer.offset.weight, layer.offset.bias)
    scale = 0.25 if layer.scope is None else 0.5 * torch.sigmoid(F.conv2d(x, layer.scope.weight))
    o = (raw * scale).view(b, 2, g, s, s, h, w)                              # [x/y][group][p][q]
    centre = ((torch.arange(s, dtype=torch.float64) + 0.5) / s - 0.5).float().to(x.dtype)   # the fp32 buffer
    ox = o[:, 0] + centre.view(1, 1, 1, s, 1, 1)                             # depends on q
    oy = o[:, 1] + centre.view(1, 1, s, 1, 1, 1)                             # depends on p
    # (B, G, p, q, h, w) -> (B, G, h·S + p, w·S + q)
    u = (ox + torch.arange(w, dtype=x.dtype)).permute(0, 1, 4, 2, 5, 3).reshape(b, g, h * s, w * s)
    v = (oy + torch.arange(h, dtype=x.dtype).view(h, 1)).permute(0, 1, 4, 2, 5, 3).reshape(b, g, h * s, w * s)
    u, v = u.clamp(0, w - 1), v.clamp(0, h - 1)
    u0, v0 = u.floor().long(), v.floor().long()
    u1, v1 = (u0 + 1).clamp(max=w - 1), (v0 + 1).clamp(max=h - 1)
    au, av = u - u0, v - v0
    feats = x.view(b, g, c // g, h * w)

    def at(vi, ui):
        index = (vi * w + ui).view(b, g, 1, -1).expand(-1, -1, c // g, -1)
        return feats.gather(3, index).view(b, g, c // g, h * s, w * s)

    out = (at(v0, u0) * ((1 - au) * (1 - av)).unsqueeze(2) + at(v0, u1) * (au * (1 - av)).unsqueeze(2)
           + at(v1, u0) * ((1 - au) * av).unsqueeze(2) + at(v1, u1) * (au * av).unsqueeze(2))
    return out.view(b, c, h * s, w * s)


def _randomise(layer, std):
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std)


def _check_against(layer, oracle, x):
    y = layer(x)
    expected = oracle(layer, x)
    torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-10)
    grad = torch.randn(y.shape, dtype=y.dtype)
    params = list(layer.parameters())
    for got, want in zip(torch.autograd.grad(y, [x] + params, grad), torch.autograd.grad(expected, [x] + params, grad)):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize('channels,scale,up_kernel,up_group,encoder_kernel,dilation', [
    (16, 2, 5, 1, 3, 1), (12, 2, 3, 4, 1, 1), (8, 3, 5, 2, 3, 2), (4, 2, 1, 1, 3, 1)])
def test_carafe_torch_matches_oracle(channels, scale, up_kernel, up_group, encoder_kernel, dilation):
    layer = CARAFETorch(channels, scale, up_kernel, up_group, encoder_kernel, dilation, compressed_channels=8).double()
    _randomise(layer, 0.3)
    x = torch.randn(2, channels, 7, 5, dtype=torch.float64, requires_grad=True)
    assert layer(x).shape == (2, channels, 7 * scale, 5 * scale)
    _check_against(layer, carafe_oracle, x)


@needs_openmmlab
def test_carafe_torch_and_mmcv_carafepack_share_checkpoints():
    from mmcv.ops import CARAFEPack
    theirs = CARAFEPack(16, 2, up_kernel=5, up_group=2, encoder_kernel=3, encoder_dilation=1, compressed_channels=8)
    ours = CARAFETorch(16, 2, up_kernel=5, up_group=2, encoder_kernel=3, encoder_dilation=1, compressed_channels=8)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    ours.load_state_dict(theirs.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))
    _randomise(ours, 0.3)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(1, 16, 6, 5, requires_grad=True)
    torch.testing.assert_close(ours(x), carafe_oracle(ours, x), rtol=1e-5, atol=1e-6)
    if torch.cuda.is_available():  # mmcv's CARAFE runs on CUDA only
        xc = x.detach().cuda()
        torch.testing.assert_close(ours.cuda()(xc), theirs.cuda()(xc), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('groups,scale,dyscope', [(4, 2, False), (1, 2, False), (2, 3, False), (4, 2, True)])
def test_dysample_matches_oracle(groups, scale, dyscope):
    layer = DySample(8, scale, groups=groups, dyscope=dyscope).double()
    _randomise(layer, 0.4)   # offsets of a few pixels: many samples hit the border
    x = torch.randn(2, 8, 6, 5, dtype=torch.float64, requires_grad=True)
    assert layer(x).shape == (2, 8, 6 * scale, 5 * scale)
    _check_against(layer, dysample_oracle, x)


@pytest.mark.parametrize('scale', [2, 3])
def test_dysample_starts_as_bilinear_upsampling(scale):
    layer = DySample(8, scale)
    assert layer.init_pos.shape == (1, 2 * 4 * scale ** 2, 1, 1)
    assert float(layer.offset.weight.std()) < 0.002 and not layer.offset.bias.any()
    torch.nn.init.zeros_(layer.offset.weight)
    x = torch.randn(2, 8, 5, 7)
    expected = F.interpolate(x, scale_factor=scale, mode='bilinear', align_corners=False)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
@pytest.mark.parametrize('cfg,cls', [(dict(type='carafe_torch', up_kernel=3), CARAFETorch),
                                     (dict(type='dysample', groups=4), DySample)])
@needs_openmmlab
def test_builds_in_scope_and_in_upsampler_fpn(scope, cfg, cls):
    importlib.import_module(f'{scope}.registry')
    with DefaultScope.overwrite_default_scope(scope):
        layer = build_upsample_layer(cfg, channels=16, scale_factor=2)
        registry = importlib.import_module(f'{scope}.registry').MODELS
        neck = registry.build(dict(type='UpsamplerFPN', in_channels=[8, 16, 32], out_channels=16, num_outs=4,
                                   upsample_cfg=cfg))
    assert type(layer) is cls and layer(torch.randn(1, 16, 3, 5)).shape == (1, 16, 6, 10)
    assert isinstance(neck, UpsamplerFPN) and all(type(u) is cls for u in neck.upsamplers)
    neck.init_weights()   # the neck's Xavier init, then each upsampler's own (near-identity kernels / offsets)
    last = [u.content_encoder if cls is CARAFETorch else u.offset for u in neck.upsamplers]
    assert all(float(m.weight.std()) < 0.002 and not m.bias.any() for m in last)
    inputs = [torch.randn(2, c, s, s + 1) for c, s in ((8, 17), (16, 9), (32, 5))]   # odd sizes: cropped
    outs = neck(inputs)
    assert [o.shape[2:] for o in outs] == [(17, 18), (9, 10), (5, 6), (3, 3)]
    sum(o.sum() for o in outs).backward()


@pytest.mark.parametrize('cls', [CARAFETorch, DySample])
@pytest.mark.parametrize('dtype', AUTOCAST_DTYPES)
def test_autocast(cls, dtype):
    torch.manual_seed(0)
    layer = cls(16, 2)
    x = torch.randn(2, 16, 6, 6, requires_grad=True)
    with torch.autocast('cpu', dtype=dtype):
        y = layer(x)
    assert y.dtype in (dtype, torch.float32)
    y.float().sum().backward()
    assert torch.isfinite(x.grad).all()
    reference = layer(x.detach())
    assert float((y.float() - reference).abs().max() / reference.abs().max()) < 3e-2


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match='carafe_torch: up_kernel must be odd'):
        CARAFETorch(8, 2, up_kernel=4)
    with pytest.raises(ValueError, match='carafe_torch: up_group'):
        CARAFETorch(8, 2, up_group=3)
    with pytest.raises(TypeError, match='carafe_torch: scale_factor'):
        CARAFETorch(8, 1.5)
    with pytest.raises(ValueError, match='dysample: groups'):
        DySample(6, 2, groups=4)
    with pytest.raises(ValueError, match="dysample: style must be 'lp'"):
        DySample(8, 2, style='pl')
    with pytest.raises(ValueError, match='dysample: scale_factor'):
        DySample(8, 1)
    with pytest.raises(ValueError, match=r'input must be \(B, 8, H, W\)'):
        DySample(8, 2)(torch.randn(1, 4, 3, 3))


@needs_custom_ops
@pytest.mark.parametrize('cls', [CARAFETorch, DySample])
def test_compiles_without_graph_breaks(cls):
    torch.manual_seed(0)
    layer = cls(8, 2)
    compiled = torch.compile(layer, backend='aot_eager', fullgraph=True)
    x = torch.randn(1, 8, 5, 6, requires_grad=True)
    y = compiled(x)
    (gx,) = torch.autograd.grad(y.sum(), x)
    x2 = x.detach().requires_grad_()
    torch.testing.assert_close(y, layer(x2))
    torch.testing.assert_close(gx, torch.autograd.grad(layer(x2).sum(), x2)[0])


def test_dysample_state_dict_names_are_the_authors():
    assert set(DySample(16, 2).state_dict()) == {'offset.weight', 'offset.bias', 'init_pos'}
    layer = DySample(16, 2, groups=4, dyscope=True)
    assert {k: tuple(v.shape) for k, v in layer.state_dict().items()} == {
        'offset.weight': (32, 16, 1, 1), 'offset.bias': (32,), 'scope.weight': (32, 16, 1, 1),
        'init_pos': (1, 32, 1, 1)}
    assert layer.scope.bias is None


@pytest.mark.parametrize('groups,scale', [(4, 2), (2, 3)])
def test_dysample_release_state_dict_loads_strictly(groups, scale):
    """The authors' module with ``dyscope=True`` has ``offset`` (1×1 conv with bias), ``scope`` (1×1 conv without
    bias) and the buffer ``init_pos``: a state dict of that layout loads with strict=True, ours loads back into a
    module of that layout, and the loaded layer follows o = 0.5·sigmoid(scope(x))·offset(x) + p0."""
    gen = torch.Generator().manual_seed(0)
    c, out = 8, 2 * groups * scale * scale
    release = {'offset.weight': torch.randn(out, c, 1, 1, generator=gen) * 0.3,
               'offset.bias': torch.randn(out, generator=gen) * 0.3,
               'scope.weight': torch.randn(out, c, 1, 1, generator=gen),
               'init_pos': DySample.initial_positions(scale, groups)}
    layer = DySample(c, scale, groups=groups, dyscope=True)
    assert str(layer.load_state_dict(release, strict=True)) == '<All keys matched successfully>'

    class ReleaseLayout(torch.nn.Module):   # only the parameter layout of the authors' module
        def __init__(self):
            super().__init__()
            self.offset = torch.nn.Conv2d(c, out, 1)
            self.scope = torch.nn.Conv2d(c, out, 1, bias=False)
            self.register_buffer('init_pos', torch.zeros(1, out, 1, 1))

    ReleaseLayout().load_state_dict(layer.state_dict(), strict=True)
    with pytest.raises(RuntimeError, match='scope.bias'):   # the layout of the authors' first upload
        layer.load_state_dict({**release, 'scope.bias': torch.zeros(out)}, strict=True)
    x = torch.randn(2, c, 5, 4, generator=gen)
    expected = (F.conv2d(x, release['offset.weight'], release['offset.bias'])
                * torch.sigmoid(F.conv2d(x, release['scope.weight'])) * 0.5 + release['init_pos'])
    torch.testing.assert_close(layer.offsets(x), expected)
