"""CondConv, DYConv and ODConv conv layers against per-sample oracles written here from the papers' equations (values
and gradients of the input and every parameter), registry builds in both scopes, plain-checkpoint loading, batch 1,
autocast, the temperature hook, and errors."""
import math
import types

import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer
from mmengine.registry import HOOKS, DefaultScope
from torch import nn
from torch_support import AUTOCAST_DTYPES, needs_custom_ops, needs_openmmlab

import mmdynconv  # noqa: F401  (registers the layers)
from mmdynconv.layers import CondConv, DYConv, ODConv, TemperatureAnnealHook

LAYERS = {'CondConv': CondConv, 'DYConv': DYConv, 'ODConv': ODConv}


def per_sample_conv(x, kernels, biases, layer):
    """One F.conv2d per sample with its own kernel (Co, Ci/groups, kh, kw) and bias (Co,) or None."""
    return torch.cat([F.conv2d(x[b:b + 1], kernels[b], None if biases is None else biases[b], layer.stride,
                               layer.padding, layer.dilation, layer.groups) for b in range(x.shape[0])])


def condconv_oracle(layer, x):
    r = torch.sigmoid(x.mean((2, 3)) @ layer.routing.weight.T + layer.routing.bias)      # (B, E)
    kernels = [sum(r[b, e] * layer.weight[e] for e in range(layer.num_kernels)) for b in range(x.shape[0])]
    biases = None if layer.bias is None else [r[b] @ layer.bias for b in range(x.shape[0])]
    return per_sample_conv(x, kernels, biases, layer)


def dyconv_oracle(layer, x):
    fc1, fc2 = layer.attention.fc1, layer.attention.fc2
    z = F.relu(x.mean((2, 3)) @ fc1.weight.T + fc1.bias) @ fc2.weight.T + fc2.bias
    pi = torch.exp(z / layer.temperature)
    pi = pi / pi.sum(1, keepdim=True)
    kernels = [sum(pi[b, e] * layer.weight[e] for e in range(layer.num_kernels)) for b in range(x.shape[0])]
    biases = None if layer.bias is None else [pi[b] @ layer.bias for b in range(x.shape[0])]
    return per_sample_conv(x, kernels, biases, layer)


def odconv_attentions(layer, x):
    a = layer.attention
    z = x.mean((2, 3)) @ a.fc.weight.flatten(1).T                                       # (B, A)
    if layer.training and x.shape[0] > 1:
        mean, var = z.mean(0), z.var(0, unbiased=False)
    else:
        mean, var = a.bn.running_mean, a.bn.running_var
    z = F.relu((z - mean) / torch.sqrt(var + a.bn.eps) * a.bn.weight + a.bn.bias)
    t = layer.temperature

    def head(conv):
        return (z @ conv.weight.flatten(1).T + conv.bias) / t

    b = x.shape[0]
    ones = x.new_ones(())
    att_in = torch.sigmoid(head(a.channel_fc))
    att_out = torch.sigmoid(head(a.filter_fc)) if a.filter_fc is not None else ones.expand(b, layer.out_channels)
    spatial = torch.sigmoid(head(a.spatial_fc)).view(b, *layer.kernel_size) if a.spatial_fc is not None \
        else ones.expand(b, *layer.kernel_size)
    kernel = torch.softmax(head(a.kernel_fc), 1) if a.kernel_fc is not None else ones.expand(b, 1)
    return att_in, att_out, spatial, kernel


def odconv_oracle(layer, x):
    att_in, att_out, spatial, kernel = odconv_attentions(layer, x)
    co, cig = layer.out_channels, layer.in_channels // layer.groups
    in_index = torch.arange(co)[:, None] // (co // layer.groups) * cig + torch.arange(cig)   # (Co, Cig) -> channel
    kernels = []
    for b in range(x.shape[0]):
        w = sum(kernel[b, n] * layer.weight[n] for n in range(layer.num_kernels))
        kernels.append(w * spatial[b] * att_out[b].view(-1, 1, 1, 1) * att_in[b][in_index][:, :, None, None])
    biases = None if layer.bias is None else [layer.bias] * x.shape[0]
    return per_sample_conv(x, kernels, biases, layer)


ORACLES = {'CondConv': condconv_oracle, 'DYConv': dyconv_oracle, 'ODConv': odconv_oracle}
SHAPES = [  # ci, co, kernel_size, stride, padding, dilation, groups, bias
    (16, 24, 3, 1, 1, 1, 1, True),
    (12, 8, 3, 2, 2, 2, 4, False),
    (8, 8, 3, 2, 1, 1, 8, True),          # depthwise (ODConv skips the output-channel attention)
    (16, 32, 1, 2, 0, 1, 1, False),       # strided 1×1 (matmul path)
    (6, 10, (3, 1), (1, 2), (1, 0), 1, 2, True),
]


def _randomise(layer):
    """Non-trivial parameters and BN statistics, so that every attention matters."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * (0.5 if p.dim() < 2 else 0.3))
        for m in layer.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(generator=gen)
                m.running_var.uniform_(0.5, 2, generator=gen)


@pytest.mark.parametrize('name', LAYERS)
@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('training', [True, False])
def test_layer_matches_oracle(name, shape, training):
    ci, co, k, stride, padding, dilation, groups, bias = shape
    layer = LAYERS[name](ci, co, k, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias)
    layer = layer.double().train(training)
    _randomise(layer)
    if name != 'CondConv':
        layer.temperature = 2.5
    x = torch.randn(3, ci, 11, 9, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    expected = ORACLES[name](layer, x)
    torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-10)
    conv = nn.Conv2d(ci, co, k, stride, padding, dilation, groups)
    assert y.shape[2:] == conv(x.float()).shape[2:]
    grad = torch.randn(y.shape, dtype=torch.float64)
    params = [p for p in layer.parameters()]
    got = torch.autograd.grad(y, [x] + params, grad)
    want = torch.autograd.grad(expected, [x] + params, grad, allow_unused=True)
    for (pname, _), g, w in zip([('x', x)] + list(layer.named_parameters()), got, want):
        torch.testing.assert_close(g, w if w is not None else torch.zeros_like(g), rtol=1e-9, atol=1e-10,
                                   msg=lambda m, p=pname: f'{name} grad {p}: {m}')


@needs_openmmlab
@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
@pytest.mark.parametrize('name', LAYERS)
def test_builds_through_build_conv_layer_in_scope(scope, name):
    import importlib
    importlib.import_module(f'{scope}.registry')
    with DefaultScope.overwrite_default_scope(scope):
        layer = build_conv_layer(dict(type=name), 8, 16, kernel_size=3, stride=2, padding=1, dilation=1, bias=False)
    assert type(layer) is LAYERS[name] and layer.bias is None and layer.stride == (2, 2)
    assert layer(torch.randn(2, 8, 9, 9)).shape == (2, 16, 5, 5)


def test_plain_checkpoint_rules():
    """A plain conv's W/b initialise every expert as W/g, b/g (g: the attentions' gain at zero logits); CondConv's
    routing becomes antithetic (row E/2 + e = −row e) and ODConv's sigmoid heads zero, its kernel head untouched."""
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 12, 3, padding=1).double()
    gains = {'DYConv': (1.0, 1.0), 'CondConv': (4.0, 4.0), 'ODConv': (0.125, 1.0)}
    for name, cls in LAYERS.items():
        layer = cls(8, 12, 3, padding=1, bias=True).double()
        _randomise(layer)
        before = {k: v.clone() for k, v in layer.state_dict().items()}
        result = layer.load_state_dict(conv.state_dict(), strict=False)
        assert not result.unexpected_keys and all(k.split('.')[0] in ('routing', 'attention')
                                                  for k in result.missing_keys), result
        weight_gain, bias_gain = gains[name]
        assert all(torch.equal(expert, conv.weight / weight_gain) for expert in layer.weight)
        after = layer.state_dict()
        if name == 'DYConv':
            assert all(torch.equal(after[k], before[k]) for k in before if k.startswith('attention.'))
        elif name == 'CondConv':
            assert all(torch.equal(b, conv.bias / bias_gain) for b in layer.bias)
            for key in ('routing.weight', 'routing.bias'):
                assert torch.equal(after[key][:4], before[key][:4]) and torch.equal(after[key][4:], -before[key][:4])
        else:
            assert torch.equal(layer.bias, conv.bias)
            for head in ('channel_fc', 'filter_fc', 'spatial_fc'):
                for p in ('weight', 'bias'):
                    assert not after[f'attention.{head}.{p}'].any()
            for key in ('attention.kernel_fc.weight', 'attention.kernel_fc.bias', 'attention.fc.weight'):
                assert torch.equal(after[key], before[key])
    layer = DYConv(8, 12, 3, padding=1)
    with pytest.raises(RuntimeError, match='cannot initialise DYConv experts'):
        layer.load_state_dict(nn.Conv2d(8, 12, 1).state_dict(), strict=False)


CONVERSION_SHAPES = [  # ci, co, kernel_size, stride, groups
    (12, 16, 3, 1, 1),
    (12, 16, 1, 1, 1),
    (12, 12, 3, 2, 12),       # depthwise 3×3
    (12, 12, 1, 1, 12),       # depthwise 1×1
    (12, 18, 3, 1, 3),        # grouped
    (16, 8, (3, 1), 2, 1),
]


@pytest.mark.parametrize('name', sorted(LAYERS))
@pytest.mark.parametrize('ci,co,kernel_size,stride,groups', CONVERSION_SHAPES)
@pytest.mark.parametrize('num_kernels', [4, 3])
def test_converted_layer_is_the_plain_conv(name, ci, co, kernel_size, stride, groups, num_kernels):
    """Right after loading a plain checkpoint, with the attentions as initialised (no manual zeroing), the layer
    is the plain conv for every input: float64, train mode (ODConv's BatchNorm on batch statistics) and eval mode
    (its initial or randomised running statistics), several temperatures."""
    torch.manual_seed(1)
    kernel_size = kernel_size if isinstance(kernel_size, tuple) else (kernel_size, kernel_size)
    pad = (kernel_size[0] // 2, kernel_size[1] // 2)
    conv = nn.Conv2d(ci, co, kernel_size, stride, pad, groups=groups).double()
    kernels = {'CondConv': 'num_experts', 'DYConv': 'num_kernels', 'ODConv': 'kernel_num'}[name]
    for randomise in (False, True):
        layer = LAYERS[name](ci, co, kernel_size, stride, pad, groups=groups, bias=True,
                             **{kernels: num_kernels}).double()
        if randomise:   # a layer that is not fresh: the conversion does not rely on the initialisation
            _randomise(layer)
        layer.load_state_dict(conv.state_dict(), strict=False)
        x = torch.randn(3, ci, 9, 8, dtype=torch.float64) * 2 + 0.5
        expected = conv(x)
        for training in (True, False):
            layer.train(training)
            for temperature in ((1.0, 30.0) if name != 'CondConv' else (None,)):
                if temperature is not None:
                    layer.temperature = temperature
                torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('name', sorted(LAYERS))
def test_converted_experts_separate_when_trained(name):
    """Conversion gives every expert the same kernel; the attentions must still tell the experts apart, or they get
    identical updates forever (what zeroing CondConv's routing or ODConv's kernel head would do)."""
    torch.manual_seed(2)
    conv = nn.Conv2d(8, 8, 3, padding=1).double()
    layer = LAYERS[name](8, 8, 3, padding=1, bias=True).double()
    layer.load_state_dict(conv.state_dict(), strict=False)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    x = torch.randn(4, 8, 6, 6, dtype=torch.float64)
    target = torch.randn(4, 8, 6, 6, dtype=torch.float64)
    for _ in range(2):
        optimizer.zero_grad()
        F.mse_loss(layer(x), target).backward()
        optimizer.step()
    spread = (layer.weight - layer.weight.mean(0)).abs().max() / layer.weight.abs().max()
    assert spread > 1e-4, float(spread)


def test_condconv_initialisation_follows_the_authors():
    """Experts N(0, 2/fan_out) with fan_out = kh·kw·Co/groups (TensorFlow ``conv_kernel_initializer``; depthwise:
    kh·kw·multiplier), zero expert biases; routing Glorot-uniform U(±√(6/(Ci+E))) with a zero bias."""
    torch.manual_seed(0)
    for ci, co, k, groups in ((64, 128, 3, 1), (256, 256, 3, 256), (128, 256, 5, 128), (64, 64, 1, 1),
                              (96, 192, 3, 4)):
        layer = CondConv(ci, co, k, groups=groups, num_experts=8)
        fan_out = k * k * co // groups
        std = math.sqrt(2 / fan_out)
        w = layer.weight.detach().double()
        n = w.numel()
        assert abs(float(w.mean())) < 4 * std / math.sqrt(n), (ci, co, k, groups)
        assert abs(float(w.std()) / std - 1) < 4 * math.sqrt(0.5 / n) + 1e-3, (ci, co, k, groups, float(w.std()))
        for expert in w:   # every expert drawn with that law, not one draw shared
            assert abs(float(expert.std()) / std - 1) < 0.1
        assert not torch.equal(w[0], w[1])
        assert not layer.bias.any()
        limit = math.sqrt(6 / (ci + 8))
        r = layer.routing.weight.detach().double()
        assert float(r.abs().max()) <= limit
        assert abs(float(r.var()) / (limit ** 2 / 3) - 1) < 4 * math.sqrt(0.8 / r.numel())
        assert not layer.routing.bias.any()
    # depthwise with channel multiplier 2: fan_out = k²·2 (PyTorch's kaiming fan_out would be Co·k², 128× more)
    dw = CondConv(128, 256, 3, groups=128)
    assert abs(float(dw.weight.detach().std()) / math.sqrt(2 / 18) - 1) < 0.02


def test_odconv_parameter_names_are_the_authors():
    layer = ODConv(32, 64, 3, padding=1, kernel_num=4)
    names = {k for k in layer.state_dict() if not k.startswith('attention.bn.')}
    assert names == {'weight', 'attention.fc.weight', 'attention.channel_fc.weight', 'attention.channel_fc.bias',
                     'attention.filter_fc.weight', 'attention.filter_fc.bias', 'attention.spatial_fc.weight',
                     'attention.spatial_fc.bias', 'attention.kernel_fc.weight', 'attention.kernel_fc.bias'}
    assert layer.weight.shape == (4, 64, 32, 3, 3)
    assert layer.attention.fc.weight.shape == (16, 32, 1, 1)              # max(⌊32/16⌋, 16) = 16
    assert ODConv(1024, 8, 1).attention.fc.weight.shape[0] == 64           # ⌊1024/16⌋
    assert ODConv(8, 8, 1, kernel_num=1).attention.kernel_fc is None
    assert DYConv(64, 64, 3).attention.fc1.out_features == 16              # reduction 4


@pytest.mark.parametrize('name', LAYERS)
def test_batch_one_training_step(name):
    layer = LAYERS[name](8, 8, 3, padding=1).train()
    x = torch.randn(1, 8, 5, 5, requires_grad=True)
    layer(x).sum().backward()
    assert torch.isfinite(x.grad).all() and all(p.grad is not None for p in layer.parameters())
    if name == 'ODConv':  # one sample: normalised with the running statistics, which stay untouched
        bn = layer.attention.bn
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        torch.testing.assert_close(layer(x), layer.eval()(x))


@pytest.mark.parametrize('name', LAYERS)
@pytest.mark.parametrize('dtype', AUTOCAST_DTYPES)
def test_autocast(name, dtype):
    torch.manual_seed(0)
    layer = LAYERS[name](16, 16, 3, padding=1, bias=True).eval()
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    with torch.autocast('cpu', dtype=dtype):
        y = layer(x)
    assert y.dtype == dtype
    y.float().sum().backward()
    assert x.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()
    reference = layer(x.detach())
    assert float((y.float() - reference).abs().max() / reference.abs().max()) < 3e-2


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match='CondConv: groups'):
        CondConv(6, 8, 3, groups=4)
    with pytest.raises(ValueError, match='DYConv: kernel_size'):
        DYConv(6, 8, 0)
    with pytest.raises(TypeError, match='ODConv: stride'):
        ODConv(6, 8, 3, stride=1.5)
    with pytest.raises(ValueError, match='CondConv: num_experts'):
        CondConv(6, 8, 3, num_experts=0)
    with pytest.raises(TypeError, match='ODConv: kernel_num'):
        ODConv(6, 8, 3, kernel_num=2.0)
    with pytest.raises(ValueError, match='DYConv: num_kernels'):
        DYConv(6, 8, 3, num_kernels=0)
    with pytest.raises(ValueError, match='DYConv: temperature'):
        DYConv(6, 8, 3, temperature=0)
    with pytest.raises(ValueError, match='DYConv: reduction'):
        DYConv(6, 8, 3, reduction=0)
    with pytest.raises(ValueError, match='ODConv: reduction'):
        ODConv(6, 8, 3, reduction=-1)
    with pytest.raises(TypeError, match='ODConv: bias'):
        ODConv(6, 8, 3, bias='yes')
    with pytest.raises(ValueError, match=r'input must be \(B, 6, H, W\)'):
        CondConv(6, 8, 3)(torch.randn(1, 5, 4, 4))


def _runner(model, iteration, iters_per_epoch):
    return types.SimpleNamespace(model=model, iter=iteration, train_dataloader=[None] * iters_per_epoch,
                                 logger=types.SimpleNamespace(warning=lambda msg: None))


@needs_openmmlab
@pytest.mark.parametrize('scope', [None, 'mmdet', 'mmseg'])
def test_temperature_hook_anneals_every_layer(scope):
    if scope is not None:
        __import__(f'{scope}.registry')
    with DefaultScope.overwrite_default_scope(scope):
        hook = HOOKS.build(dict(type='TemperatureAnnealHook', start=30, end=1, anneal=2))
    assert isinstance(hook, TemperatureAnnealHook)
    model = nn.Sequential(DYConv(4, 4, 3), nn.Sequential(ODConv(4, 4, 1)), CondConv(4, 4, 1))
    hook.before_train(_runner(model, 0, 10))
    assert model[0].temperature == model[1][0].temperature == 30.0
    hook.before_train_iter(_runner(model, 10, 10), 0)                      # iteration 10 of 20 runs at 11/20
    assert math.isclose(model[0].temperature, 14.05) and math.isclose(model[1][0].attention.temperature, 14.05)
    hook.before_train_iter(_runner(model, 25, 10), 5)
    assert model[0].temperature == model[1][0].temperature == 1.0
    by_iter = TemperatureAnnealHook(start=10, end=2, anneal=4, by_epoch=False)
    assert [by_iter.temperature(i) for i in (0, 2, 3, 9)] == [8.0, 4.0, 2.0, 2.0]
    with pytest.raises(ValueError, match='anneal'):
        TemperatureAnnealHook(anneal=0)
    with pytest.raises(ValueError, match='start'):
        TemperatureAnnealHook(start=0)


def release_temperature(iteration, epoch, iters_per_epoch, temp_epoch, temp_init):
    """ODConv's released schedule: τ = 1 + max(0, (τ0 − 1)·(T − t)/T), T = iters_per_epoch·temp_epoch and
    t = iteration + epoch·iters_per_epoch, called with iteration = batch_idx + 1 before each batch while
    epoch < temp_epoch (and with iteration 0 before training)."""
    total = iters_per_epoch * temp_epoch
    return 1.0 + max(0.0, (temp_init - 1.0) * (total - (iteration + epoch * iters_per_epoch)) / total)


@pytest.mark.parametrize('iters_per_epoch,temp_epoch,temp_init', [(7, 3, 30.0), (10, 10, 30.0), (5, 1, 4.0)])
def test_temperature_hook_follows_the_odconv_release(iters_per_epoch, temp_epoch, temp_init):
    """Before training iteration t the layers hold the temperature the authors' loop sets before that batch."""
    hook = TemperatureAnnealHook(start=temp_init, end=1.0, anneal=temp_epoch)
    layer = ODConv(4, 4, 3)
    hook.before_train(_runner(layer, 0, iters_per_epoch))
    assert math.isclose(layer.temperature, release_temperature(0, 0, iters_per_epoch, temp_epoch, temp_init))
    release = None
    for t in range((temp_epoch + 2) * iters_per_epoch):
        epoch, batch_idx = divmod(t, iters_per_epoch)
        if epoch < temp_epoch:   # afterwards the release keeps the last value
            release = release_temperature(batch_idx + 1, epoch, iters_per_epoch, temp_epoch, temp_init)
        hook.before_train_iter(_runner(layer, t, iters_per_epoch), batch_idx)
        assert math.isclose(layer.temperature, release, rel_tol=1e-12), (t, layer.temperature, release)
    assert release == 1.0
    by_iter = TemperatureAnnealHook(start=temp_init, end=1.0, anneal=iters_per_epoch * temp_epoch, by_epoch=False)
    for t in range(iters_per_epoch * temp_epoch):
        epoch, batch_idx = divmod(t, iters_per_epoch)
        assert math.isclose(by_iter.temperature(t),
                            release_temperature(batch_idx + 1, epoch, iters_per_epoch, temp_epoch, temp_init))


@needs_custom_ops
def test_compiles_without_graph_breaks():
    """The kernel-mixture op is one custom op with a fake implementation: torch.compile(fullgraph=True) traces the
    layer, forward and backward."""
    torch.manual_seed(0)
    layer = ODConv(8, 8, 3, padding=1, groups=2).eval()
    compiled = torch.compile(layer, backend='aot_eager', fullgraph=True)
    x = torch.randn(2, 8, 7, 7, requires_grad=True)
    y = compiled(x)
    (gx,) = torch.autograd.grad(y.sum(), x)
    x2 = x.detach().requires_grad_()
    torch.testing.assert_close(y, layer(x2))
    torch.testing.assert_close(gx, torch.autograd.grad(layer(x2).sum(), x2)[0])
