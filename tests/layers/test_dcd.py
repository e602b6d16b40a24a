"""DCD (``mmdynconv.layers.DCDConv``): values and gradients against a per-sample oracle that materialises W(x),
plain-checkpoint loading, the authors' release (fixture), the configs and argument errors."""
import copy
import os.path as osp
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch_support import AUTOCAST_DTYPES, needs_openmmlab

from mmdynconv.layers import DCDConv
from mmdynconv.layers.dcd_conv import RELEASE_KEYS

ROOT = Path(__file__).parents[2]
FIXTURE = torch.load(ROOT / 'tests' / 'fixtures' / 'dcd_release_6a5e27f.pt', weights_only=True)
DCD_KEYS = {'q.weight', 'p.weight', 'fc.weight', 'fc_gate.weight', 'fc_phi.weight', 'fc_scale.weight'} | {
    f'bn{i}.{k}' for i in (1, 2) for k in ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')}


def hsig(z):
    return torch.clamp(z + 3, 0, 6) / 3


def bn_affine(bn, z, training):
    """(a, c) with BN(z) = a·z + c per channel: batch statistics over all but dim 1 in training, else running."""
    if training:
        dims = [d for d in range(z.dim()) if d != 1]
        mean, var = z.mean(dims), z.var(dims, unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    a = bn.weight / torch.sqrt(var + bn.eps)
    return a, bn.bias - a * mean


def dense(weight, groups):
    """A grouped kernel (Co, Ci/G, kh, kw) as the dense (Co, Ci, kh, kw) one (zeros across groups)."""
    co, cig = weight.shape[:2]
    out = weight.new_zeros(co, cig * groups, *weight.shape[2:])
    for g in range(groups):
        rows = slice(g * co // groups, (g + 1) * co // groups)
        out[rows, g * cig:(g + 1) * cig] = weight[rows]
    return out


def latent(layer, x, q):
    """Qᵀx at the kernel's centre tap (a k×k conv whose only non-zero tap is the centre) and that tap (kh, kw)."""
    kh, kw = layer.kernel_size
    centre = x.new_zeros(kh, kw)
    centre[kh // 2, kw // 2] = 1
    z = F.conv2d(x, q[:, :, None, None] * centre, stride=layer.stride, padding=layer.padding,
                 dilation=layer.dilation)
    return z, centre


def oracle(layer, x, training):
    """Per sample b the kernel W_b = Λ_b ⊙ W0 + centre(M_b diag(a1) Q) and bias M_b c1 + P c2 (+ bias), with
    M_b = P (diag(a2) Φ_b + I) and BN1 / BN2 the affine maps a·z + c of the latent BatchNorms; F.conv2d per sample."""
    b, g, dim = x.shape[0], layer.groups, layer.dim
    ci, co = layer.in_channels, layer.out_channels
    conv = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation)
    y = F.adaptive_avg_pool2d(x, layer.pool_size).flatten(1) @ layer.fc.weight.T
    y = y * hsig(y @ layer.fc_gate.weight.T)
    phi = (y @ layer.fc_phi.weight.T).view(b, g, dim, dim)
    lam = hsig(y @ layer.fc_scale.weight.T)
    q = torch.block_diag(*layer.q.weight.flatten(1).view(g, dim, ci // g))       # (G·L, Ci)
    p = torch.block_diag(*layer.p.weight.flatten(1).view(g, co // g, dim))       # (Co, G·L)
    z, centre = latent(layer, x, q)
    a1, c1 = bn_affine(layer.bn1, z, training)
    phis = torch.stack([torch.block_diag(*phi[i]) for i in range(b)])             # (B, G·L, G·L)
    v = torch.einsum('bij,bjhw->bihw', phis, a1[:, None, None] * z + c1[:, None, None])
    a2, c2 = bn_affine(layer.bn2, v, training)
    w0 = dense(layer.weight, g)
    outs = []
    for i in range(b):
        m = p @ (a2[:, None] * phis[i] + torch.eye(g * dim, dtype=x.dtype))
        kernel = lam[i][:, None, None, None] * w0 + (m @ (a1[:, None] * q))[:, :, None, None] * centre
        bias = m @ c1 + p @ c2 + (layer.bias if layer.bias is not None else 0)
        outs.append(F.conv2d(x[i:i + 1], kernel, bias, **conv))
    return torch.cat(outs)


def perturbed(layer, seed=0):
    """Every parameter and BatchNorm statistic moved away from its initialisation."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
        for bn in (layer.bn1, layer.bn2):
            bn.running_mean.normal_(generator=gen)
            bn.running_var.uniform_(0.5, 2.0, generator=gen)
    return layer


def step(fn, params, x, grad_out_seed=3):
    """fn(x), the input gradient and the parameter gradients of a fixed weighted sum."""
    for p in params.values():
        p.grad = None
    x = x.detach().clone().requires_grad_()
    out = fn(x)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_out_seed), dtype=out.dtype)
    (out * w).sum().backward()
    return out.detach(), x.grad, {k: p.grad.clone() for k, p in params.items()}


def assert_rel(actual, expected, what, tol=1e-10):
    assert actual.shape == expected.shape, f'{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}'
    err = (actual - expected).abs().max().item() if actual.numel() else 0.0
    scale = expected.abs().max().item() if expected.numel() else 0.0
    assert err <= tol * max(scale, 1e-30), f'{what}: max error {err:.3g} > {tol:g} x {scale:.3g}'


# Ci, Co, k, stride, padding, dilation, groups, pool_size, bias, (B, H, W)
CASES = [
    (6, 10, 3, 1, 1, 1, 1, 1, True, (3, 5, 7)),
    (8, 6, 3, 2, 1, 1, 1, 2, False, (2, 7, 6)),
    (8, 8, 3, 1, 2, 2, 1, 1, True, (2, 6, 5)),
    (8, 12, 3, 2, 0, 1, 1, 1, False, (2, 7, 7)),      # centre tap one pixel in from the corner
    (8, 8, 3, 1, 3, 1, 1, 1, True, (2, 4, 5)),        # centre taps in the padding at the border
    (12, 8, 5, 2, 1, 1, 1, 1, True, (2, 9, 8)),
    (12, 6, 3, 2, 1, 1, 3, 1, True, (2, 7, 5)),       # groups: block-diagonal residual
    (8, 8, 3, 1, 1, 1, 8, 1, False, (2, 5, 5)),       # depthwise
    (7, 5, 1, 1, 0, 1, 1, 1, True, (2, 3, 4)),
    (6, 4, 1, 2, 0, 1, 2, 1, False, (2, 5, 5)),
    (6, 4, (3, 1), (2, 1), (1, 0), 1, 1, 1, True, (2, 5, 3)),
    (6, 8, 3, 1, 1, 1, 1, 1, True, (1, 4, 3)),        # batch 1
]


def build(ci, co, k, stride, padding, dilation, groups, pool_size, bias, seed=0):
    torch.manual_seed(seed)
    layer = DCDConv(ci, co, k, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias,
                    pool_size=pool_size).double()
    return perturbed(layer, seed)


@pytest.mark.parametrize('train', [True, False], ids=['train', 'eval'])
@pytest.mark.parametrize('case', CASES, ids=lambda c: 'Ci{}-Co{}-k{}-s{}-p{}-d{}-g{}-pool{}-bias{}-{}'.format(*c))
def test_values_and_gradients_match_the_per_sample_oracle(case, train):
    *args, (b, h, w) = case
    layer = build(*args)
    x = torch.randn(b, args[0], h, w, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    params = dict(layer.named_parameters())
    expected = step(lambda t: oracle(layer, t, train), params, x)
    got = step(layer.train(train), params, x)
    assert_rel(got[0], expected[0], 'output')
    assert_rel(got[1], expected[1], 'input grad')
    for k in params:
        assert_rel(got[2][k], expected[2][k], f'grad of {k}')


def test_training_updates_the_latent_running_statistics():
    layer = build(8, 6, 3, 2, 1, 1, 2, 1, True)
    x = torch.randn(3, 8, 7, 6, dtype=torch.float64)
    before = {k: v.clone() for k, v in layer.named_buffers()}
    z, _ = latent(layer, x, torch.block_diag(*layer.q.weight.flatten(1).view(2, layer.dim, 4)))
    with torch.no_grad():
        layer.train()(x)
    m = layer.bn1.momentum
    expected_mean = (1 - m) * before['bn1.running_mean'] + m * z.mean((0, 2, 3))
    expected_var = (1 - m) * before['bn1.running_var'] + m * z.var((0, 2, 3), unbiased=True)
    assert_rel(layer.bn1.running_mean, expected_mean.detach(), 'bn1 running mean')
    assert_rel(layer.bn1.running_var, expected_var.detach(), 'bn1 running var')
    assert int(layer.bn2.num_batches_tracked) == 1


def test_one_value_per_channel_in_training_uses_the_running_statistics():
    layer = build(8, 6, 3, 1, 1, 1, 1, 1, True)
    buffers = {k: v.clone() for k, v in layer.named_buffers()}
    x = torch.randn(1, 8, 1, 1, dtype=torch.float64)
    out, _, grads = step(layer.train(), dict(layer.named_parameters()), x)
    assert_rel(out, oracle(layer, x, training=False).detach(), 'output')
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert all(torch.equal(v, buffers[k]) for k, v in layer.named_buffers())


@pytest.mark.parametrize('train', [True, False], ids=['train', 'eval'])
def test_empty_batch(train):
    layer = DCDConv(12, 6, 3, stride=2, padding=1, groups=3).train(train)
    out = layer(torch.randn(0, 12, 7, 5, requires_grad=True))
    assert out.shape == (0, 6, 4, 3)
    out.sum().backward()
    assert all(p.grad is not None and not p.grad.any() for p in layer.parameters())


@pytest.mark.parametrize('dtype', AUTOCAST_DTYPES, ids=str)
def test_cpu_autocast_grouped_strided(dtype):
    layer = DCDConv(12, 8, 3, stride=2, padding=1, groups=2)
    x = torch.randn(2, 12, 9, 7)
    expected = layer(x)
    with torch.autocast('cpu', dtype=dtype):
        out = layer(x)
    out.float().sum().backward()
    assert torch.isfinite(out).all() and (out.float() - expected).abs().max() <= 0.05 * expected.abs().max()
    assert all(p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all() for p in layer.parameters())


def test_plain_checkpoint_loads_into_w0_and_the_layer_starts_as_the_plain_conv():
    torch.manual_seed(0)
    plain = nn.Conv2d(8, 12, 3, stride=2, padding=1).double()
    layer = perturbed(DCDConv(8, 12, 3, stride=2, padding=1).double())
    result = layer.load_state_dict(plain.state_dict(), strict=False)
    assert not result.unexpected_keys and set(result.missing_keys) == DCD_KEYS
    assert torch.equal(layer.weight, plain.weight) and torch.equal(layer.bias, plain.bias)
    assert not layer.p.weight.any() and not layer.fc_scale.weight.any()
    x = torch.randn(3, 8, 9, 7, dtype=torch.float64)
    for train in (True, False):
        torch.testing.assert_close(layer.train(train)(x), plain(x), rtol=1e-12, atol=1e-12)
    layer.train()(x).square().sum().backward()
    assert layer.p.weight.grad.any() and layer.fc_scale.weight.grad.any()   # the dynamic part starts learning


def test_dcd_parameters_in_the_same_state_dict_take_precedence():
    source = perturbed(DCDConv(8, 8, 3, padding=1))
    layer = DCDConv(8, 8, 3, padding=1)
    layer.load_state_dict(source.state_dict())
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in layer.state_dict().items())


def test_release_initialisation_does_not_start_at_the_plain_conv():
    """The release initialises Λ's head and P randomly (its ResNet trains from scratch): a fresh layer holding a
    plain kernel in W0 is not that conv; only loading a plain state dict zeroes P and Λ's head."""
    torch.manual_seed(0)
    plain = nn.Conv2d(16, 16, 3, padding=1, bias=False)
    layer = DCDConv(16, 16, 3, padding=1, bias=False).eval()
    assert float(layer.weight.std()) == pytest.approx((2 / (9 * 16)) ** 0.5, rel=0.1)   # N(0, 2/(k²·out))
    assert float(layer.p.weight.std()) == pytest.approx((2 / 16) ** 0.5, rel=0.2)
    with torch.no_grad():
        layer.weight.copy_(plain.weight)
    x = torch.randn(2, 16, 6, 6)
    assert (layer(x) - plain(x)).abs().max() > 0.1 * plain(x).abs().max()


def test_zero_init_residual_starts_as_the_attended_static_conv():
    torch.manual_seed(0)
    layer = DCDConv(8, 12, 3, stride=2, padding=1, zero_init_residual=True).double()
    assert not layer.p.weight.any()
    x = torch.randn(2, 8, 7, 6, dtype=torch.float64)
    lam = hsig(layer.fc_scale(layer.fc(x.mean((2, 3))) * hsig(layer.fc_gate(layer.fc(x.mean((2, 3)))))))
    expected = lam[:, :, None, None] * F.conv2d(x, layer.weight, stride=2, padding=1) + layer.bias[:, None, None]
    for train in (True, False):
        torch.testing.assert_close(layer.train(train)(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('ci, pool_size, dim, squeeze', [(64, 1, 8, 4), (256, 1, 16, 16), (64, 2, 16, 16),
                                                         (16, 1, 4, 4), (512, 2, 45, 128)])
def test_default_sizes_follow_the_release(ci, pool_size, dim, squeeze):
    """L = ⌊√(Ci·pool²)⌋ and S = max(Ci·pool², L²) // 16 (at least 4), as conv_dy / conv_basic_dy."""
    layer = DCDConv(ci, 8, 3, padding=1, pool_size=pool_size)
    assert (layer.dim, layer.squeeze) == (dim, squeeze)
    assert layer.fc_phi.weight.shape == (dim * dim, squeeze) and layer.q.weight.shape == (dim, ci, 1, 1)


@pytest.mark.parametrize('index', range(len(FIXTURE['cases'])))
def test_release_state_dict_loads_and_reproduces_the_release(index):
    """The release's conv_dy / conv_basic_dy (liyunsheng13/dcd 6a5e27f, models/imagenet/resnet_dcd.py) recorded by
    tools/dcd_release_parity.py: float64 outputs, input and parameter gradients in eval and train mode and the
    running statistics after the training step."""
    case = FIXTURE['cases'][index]
    layer = DCDConv(**case['args'], **case['ours']).double()
    layer.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in case['state_dict'].items()})
    names = {new: old for old, new in RELEASE_KEYS.items()}
    x, grad_out = case['x'].double(), case['grad_out'].double()
    for mode in ('eval', 'train'):
        layer.train(mode == 'train').zero_grad()
        xg = x.clone().requires_grad_()
        y = layer(xg)
        y.backward(grad_out)
        record = case[mode]
        assert_rel(y.detach(), record['y'], f'{mode} output', 1e-12)
        assert_rel(xg.grad, record['grad_x'], f'{mode} input grad', 1e-12)
        grads = {names.get(k, k): p.grad for k, p in layer.named_parameters()}
        assert set(grads) == set(record['grads'])
        for k, g in record['grads'].items():
            assert_rel(grads[k], g, f'{mode} grad of {k}', 1e-12)
    stats = {names.get(k, k): v for k, v in layer.named_buffers() if v.is_floating_point()}
    for k, v in case['train']['running_stats'].items():
        assert_rel(stats[k], v, k, 1e-12)


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(kernel_size=2), ValueError, r'DCD: kernel_size must be odd .*got 2'),
    (dict(kernel_size=(3, 4)), ValueError, r'DCD: kernel_size must be odd'),
    (dict(kernel_size=0), ValueError, r'DCD: kernel_size must be >= 1, got 0'),
    (dict(groups=3), ValueError, r'DCD: groups \(3\) must divide in_channels \(8\) and out_channels \(12\)'),
    (dict(groups=0), ValueError, r'DCD: groups must be >= 1, got 0'),
    (dict(stride=0), ValueError, r'DCD: stride must be >= 1, got 0'),
    (dict(padding=-1), ValueError, r'DCD: padding must be >= 0, got -1'),
    (dict(padding='same'), TypeError, r'DCD: padding must be an int'),
    (dict(dilation=(1, 0)), ValueError, r'DCD: dilation must be >= 1, got 0'),
    (dict(bias='yes'), TypeError, r'DCD: bias must be a bool'),
    (dict(zero_init_residual=1), TypeError, r'DCD: zero_init_residual must be a bool, got 1'),
    (dict(dim=0), ValueError, r'DCD: dim must be >= 1, got 0'),
    (dict(fc_squeeze=0), ValueError, r'DCD: fc_squeeze must be >= 1, got 0'),
    (dict(squeeze=True), TypeError, r'DCD: squeeze must be an int'),
    (dict(pool_size=0), ValueError, r'DCD: pool_size must be >= 1, got 0'),
    (dict(in_channels=0), ValueError, r'DCD: in_channels must be >= 1, got 0'),
])
def test_bad_arguments_name_the_argument(kwargs, error, match):
    args = dict(dict(in_channels=8, out_channels=12, kernel_size=3, padding=1), **kwargs)
    with pytest.raises(error, match=match):
        DCDConv(**args)


def test_wrong_input_is_a_clear_error():
    layer = DCDConv(8, 12, 3, padding=1)
    with pytest.raises(ValueError, match=r'DCD: input must be \(B, 8, H, W\), got \(2, 6, 5, 5\)'):
        layer(torch.randn(2, 6, 5, 5))
    with pytest.raises(TypeError, match='DCD: input must be a floating-point tensor, got torch.int64'):
        layer(torch.ones(2, 8, 5, 5, dtype=torch.int64))


def test_deepcopy_keeps_the_output():
    layer = perturbed(DCDConv(8, 8, 3, padding=1)).eval()
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(copy.deepcopy(layer)(x), layer(x))


@needs_openmmlab
@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_builds_through_build_conv_layer_in_scope(scope):
    from mmcv.cnn import build_conv_layer
    from mmengine.registry import DefaultScope
    __import__(f'{scope}.registry')
    with DefaultScope.overwrite_default_scope(scope):
        layer = build_conv_layer(dict(type='DCD', fc_squeeze=8), 16, 32, kernel_size=3, stride=2, padding=1,
                                 dilation=1, bias=False)
    assert type(layer) is DCDConv and layer.bias is None and layer.squeeze == 4
    assert layer(torch.randn(2, 16, 9, 9)).shape == (2, 32, 5, 5)


def _build_model(path):
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope, init_default_scope
    cfg = Config.fromfile(path)
    assert cfg.custom_imports == dict(imports=['mmdynconv'], allow_failed_imports=False)
    init_default_scope(cfg.default_scope)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return cfg, MODELS.build(cfg.model)


@needs_openmmlab
@pytest.mark.parametrize('config', ['configs/compare/faster-rcnn_tiny-r50-dcd_fpn_shapes64.py',
                                    pytest.param('configs/dcd/faster-rcnn_r50-dcd_fpn_1x_coco.py',
                                                 marks=pytest.mark.slow)])
def test_configs_place_dcd_in_every_bottleneck_conv(config):
    """conv1, conv2 and conv3 of every bottleneck are DCD (the release's ResNet-50); stem and shortcuts plain."""
    _, model = _build_model(osp.join(ROOT, config))
    backbone = model.backbone
    layers = {n for n, m in backbone.named_modules() if isinstance(m, DCDConv)}
    assert layers == {f'layer{s}.{b}.conv{c}' for s, n in zip(range(1, 5), (3, 4, 6, 3)) for b in range(n)
                      for c in (1, 2, 3)}
    inside = tuple(f'{n}.' for n in layers)
    plain = [n for n, m in backbone.named_modules() if type(m) is nn.Conv2d and not n.startswith(inside)]
    assert plain == ['conv1'] + [f'layer{s}.0.downsample.0' for s in range(1, 5)]


@needs_openmmlab
@pytest.mark.slow
def test_paper_config_loads_an_ordinary_resnet_checkpoint(tmp_path):
    """The COCO config's ImageNet ResNet-50 checkpoint fills every W0 and the backbone starts as the plain one."""
    from mmdet.models.backbones import ResNet
    torch.manual_seed(0)
    plain = ResNet(depth=50)
    plain.eval()
    path = tmp_path / 'resnet50.pth'
    torch.save(dict(plain.state_dict(), **{'fc.weight': torch.zeros(1000, 2048)}), path)
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope, init_default_scope
    cfg = Config.fromfile(osp.join(ROOT, 'configs/dcd/faster-rcnn_r50-dcd_fpn_1x_coco.py'))
    cfg.model.backbone.init_cfg.checkpoint = str(path)
    init_default_scope('mmdet')
    with DefaultScope.overwrite_default_scope('mmdet'):
        backbone = MODELS.build(cfg.model.backbone)
    backbone.init_weights()
    backbone.eval()
    for name in ('layer1.0.conv1', 'layer2.0.conv2', 'layer4.2.conv3'):
        assert torch.equal(backbone.get_submodule(name).weight, plain.get_submodule(name).weight)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for got, expected in zip(backbone(x), plain(x)):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
