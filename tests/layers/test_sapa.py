"""SAPA upsampler ('sapa'): docs/sapa.md semantics against a float64 oracle, options, edge cases, errors, building,
and the authors' release (a recorded fixture)."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import MODELS, DefaultScope
from torch_support import needs_export, needs_openmmlab

from mmdynconv.layers import SAPA
from mmdynconv.layers.sapa_upsample import convert_release_state_dict, release_name


def layer_norm(t, norm):
    """Layer norm over the channels of t (B, C, H, W), written out."""
    mean = t.mean(1, keepdim=True)
    var = (t - mean).square().mean(1, keepdim=True)
    return (t - mean) / (var + norm.eps).sqrt() * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)


def linear(t, weight, bias=None):
    """A linear map over the channels of t (B, C, H, W)."""
    out = torch.einsum('oc,bchw->bohw', weight, t)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def nearest(t, s):
    return t.repeat_interleave(s, 2).repeat_interleave(s, 3)


def oracle(layer, x, guidance):
    """docs/sapa.md written out: projections, queries of the chosen mode, softmax of the similarities over the
    zero-padded k×k neighbourhood (unfold), weighted sum of the values."""
    s, k = layer.scale_factor, layer.up_kernel
    b, c, h, w = x.shape
    x_n, y_n = layer_norm(x, layer.input_norm), layer_norm(guidance, layer.guidance_norm)
    if layer.query_mode == 'encoder':
        q = linear(y_n, layer.query.weight, layer.query.bias)
    elif layer.query_mode == 'concat':
        q = linear(torch.cat([y_n, nearest(x, s)], 1), layer.query.weight, layer.query.bias)
    else:
        g = nearest(torch.sigmoid(linear(x_n, layer.gate.weight, layer.gate.bias)), s)
        q = g * linear(y_n, layer.query.weight, layer.query.bias) \
            + (1 - g) * linear(nearest(x, s), layer.decoder_query.weight, layer.decoder_query.bias)
    key = linear(x_n, layer.key.weight, layer.key.bias)
    value = x if layer.value is None else linear(x_n, layer.value.weight, layer.value.bias)
    d = key.shape[1]
    keys = nearest(F.unfold(key, k, padding=k // 2).view(b, d * k * k, h, w), s).view(b, d, k * k, s * h, s * w)
    weights = (q[:, :, None] * keys).sum(1).softmax(1)                                  # (B, k², sH, sW)
    values = nearest(F.unfold(value, k, padding=k // 2).view(b, c * k * k, h, w), s).view(b, c, k * k, s * h, s * w)
    return (values * weights[:, None]).sum(2)


def perturbed(layer, seed=0):
    """The layer in float64 with every parameter moved off its initialisation (zero biases would hide errors)."""
    gen = torch.Generator().manual_seed(seed)
    layer = layer.double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return layer


def inputs(layer, b, h, w, seed=1):
    gen = torch.Generator().manual_seed(seed)
    s = layer.scale_factor
    x = torch.randn(b, layer.channels, h, w, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(b, layer.guidance_channels, s * h, s * w, generator=gen, dtype=torch.float64, requires_grad=True)
    return x, g


def step(fn, layer, x, g):
    """Output and the gradients of x, guidance and every parameter for a fixed weighted sum of the output."""
    out = fn(layer, x, g)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)
    params = list(layer.parameters())
    grads = torch.autograd.grad((out * weights).sum(), [x, g] + params)
    return out, grads


def assert_close(actual, expected, what, tol=1e-12):
    err = (actual - expected).abs().max().item() if expected.numel() else 0.0
    scale = max(expected.abs().max().item(), 1e-30) if expected.numel() else 1.0
    assert err <= tol * scale, f'{what}: max error {err:.3g} > {tol:g} x {scale:.3g}'


CASES = {
    'default': dict(),
    'gated': dict(query_mode='gated'),
    'concat': dict(query_mode='concat'),
    'k3-D4': dict(up_kernel=3, embedding_dim=4),
    'value-embed': dict(value_embed=True, embedding_dim=5),
    'no-bias': dict(qkv_bias=False, query_mode='gated', embedding_dim=6),
    'guidance-channels': dict(guidance_channels=5, query_mode='concat', embedding_dim=6),
    'gated-guidance-channels': dict(guidance_channels=3, query_mode='gated', embedding_dim=6),
    'x3': dict(scale_factor=3, up_kernel=3, embedding_dim=6),
}


@pytest.mark.parametrize('size', [(5, 7), (1, 1), (4, 4)], ids=lambda s: f'{s[0]}x{s[1]}')
@pytest.mark.parametrize('case', sorted(CASES))
def test_values_and_gradients_match_the_oracle(case, size):
    kwargs = dict(dict(scale_factor=2, embedding_dim=8), **CASES[case])
    layer = perturbed(SAPA(6, **kwargs))
    x, g = inputs(layer, 2, *size)
    out, grads = step(lambda m, a, b: m(a, b), layer, x, g)
    expected, expected_grads = step(oracle, layer, x, g)
    assert out.shape == (2, 6, layer.scale_factor * size[0], layer.scale_factor * size[1])
    assert_close(out, expected, 'output')
    names = ['x', 'guidance'] + [n for n, _ in layer.named_parameters()]
    for name, got, want in zip(names, grads, expected_grads):
        assert_close(got, want, f'grad of {name}')


def test_parameters_of_each_query_mode():
    def shapes(layer):
        return {k: tuple(v.shape) for k, v in layer.state_dict().items()}

    assert shapes(SAPA(8, guidance_channels=4)) == {
        'guidance_norm.weight': (4,), 'guidance_norm.bias': (4,), 'input_norm.weight': (8,), 'input_norm.bias': (8,),
        'query.weight': (64, 4), 'query.bias': (64,), 'key.weight': (64, 8), 'key.bias': (64,)}
    gated = shapes(SAPA(8, guidance_channels=4, query_mode='gated', embedding_dim=16))
    assert gated['decoder_query.weight'] == (16, 8) and gated['gate.weight'] == (1, 8) and len(gated) == 12
    assert shapes(SAPA(8, guidance_channels=4, query_mode='concat'))['query.weight'] == (64, 12)
    assert shapes(SAPA(8, value_embed=True))['value.weight'] == (8, 8)
    assert not any(k.endswith('bias') and 'norm' not in k for k in shapes(SAPA(8, qkv_bias=False)))


def test_gate_selects_the_encoder_or_the_decoder_query():
    layer = perturbed(SAPA(4, query_mode='gated', embedding_dim=6, up_kernel=3))
    x, g = inputs(layer, 1, 3, 5)
    encoder = SAPA(4, embedding_dim=6, up_kernel=3).double()
    encoder.load_state_dict({k: v for k, v in layer.state_dict().items()
                             if not k.startswith(('gate.', 'decoder_query.'))})
    with torch.no_grad():   # a gate driven to 1 takes the encoder query alone (SAPA-B), to 0 the decoder's
        layer.gate.weight.zero_()
        layer.gate.bias.fill_(100.0)
        assert_close(layer(x, g), encoder(x, g), 'gate 1')
        layer.gate.bias.fill_(-100.0)
        layer.query.weight.mul_(1e3)    # the encoder query no longer matters
        expected = layer(x, g)
        layer.query.weight.zero_()
        assert_close(layer(x, g), expected, 'gate 0')


def test_initialisation_is_the_releases():
    torch.manual_seed(0)
    layer = SAPA(16, query_mode='gated', value_embed=True)
    for name, p in layer.state_dict().items():
        if 'norm' in name:
            assert torch.equal(p, torch.ones_like(p) if name.endswith('weight') else torch.zeros_like(p)), name
        elif name.endswith('bias'):
            assert not p.any(), name
        else:
            assert p.abs().max() <= 2 and 0.01 < float(p.std()) < 0.03, name


def test_batch_one_training_and_empty_batch():
    layer = SAPA(8, embedding_dim=16, query_mode='gated').train()
    for b in (1, 0):
        x = torch.randn(b, 8, 5, 3, requires_grad=True)
        g = torch.randn(b, 8, 10, 6, requires_grad=True)
        out = layer(x, g)
        assert out.shape == (b, 8, 10, 6)
        out.square().sum().backward()
        assert x.grad.shape == x.shape and g.grad.shape == g.shape
        assert all(torch.isfinite(p.grad).all() for p in layer.parameters())
        if b == 0:
            assert not any(p.grad.any() for p in layer.parameters())
        layer.zero_grad(set_to_none=True)


@pytest.mark.parametrize('layout', ['channels_last', 'non_contiguous'])
def test_input_layouts_do_not_change_the_numbers(layout):
    layer = perturbed(SAPA(6, embedding_dim=8, query_mode='concat'))
    x, g = inputs(layer, 2, 4, 5)
    expected = layer(x, g)
    if layout == 'channels_last':
        x2 = x.detach().contiguous(memory_format=torch.channels_last)
        g2 = g.detach().contiguous(memory_format=torch.channels_last)
    else:
        x2 = x.detach().transpose(2, 3).contiguous().transpose(2, 3)
        g2 = torch.zeros(2, 12, 8, 13, dtype=torch.float64)[:, ::2, :, 1:11]
        g2.copy_(g.detach())
    assert not g2.is_contiguous()
    assert_close(layer(x2, g2), expected, layout)


@pytest.mark.parametrize('query_mode', ['encoder', 'gated'])
def test_autocast_bfloat16(query_mode):
    layer = SAPA(8, embedding_dim=16, query_mode=query_mode)
    x, g = torch.randn(2, 8, 5, 7, requires_grad=True), torch.randn(2, 8, 10, 14, requires_grad=True)
    expected = layer(x, g)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = layer(x, g)
    assert out.dtype == torch.bfloat16
    assert_close(out.float(), expected.detach(), 'bfloat16 autocast', tol=0.05)
    out.float().sum().backward()
    assert x.grad.dtype == g.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()


def test_forward_errors_name_the_argument():
    layer = SAPA(8, scale_factor=2)
    x, g = torch.randn(2, 8, 5, 7), torch.randn(2, 8, 10, 14)
    with pytest.raises(ValueError, match=r'^sapa: input must be \(B, 8, H, W\), got \(2, 7, 5, 7\)'):
        layer(torch.randn(2, 7, 5, 7), g)
    with pytest.raises(ValueError, match=r'^sapa: guidance must be \(B, 8, H, W\), got \(2, 3, 10, 14\)'):
        layer(x, torch.randn(2, 3, 10, 14))
    with pytest.raises(ValueError, match=r'^sapa: guidance must be \(B, C_g, S·H, S·W\) = \(2, 8, 10, 14\) for an '
                                         r'input of shape \(2, 8, 5, 7\), got \(2, 8, 10, 15\)'):
        layer(x, torch.randn(2, 8, 10, 15))
    with pytest.raises(ValueError, match=r'= \(2, 8, 10, 14\) .* got \(1, 8, 10, 14\)'):
        layer(x, g[:1])
    with pytest.raises(TypeError, match=r'^sapa: guidance must be a floating-point tensor, got torch.int64'):
        layer(x, g.long())
    with pytest.raises(TypeError, match='guidance'):
        layer(x)


@pytest.mark.parametrize('kwargs, error, message', [
    (dict(up_kernel=4), ValueError, 'sapa: up_kernel must be odd, got 4'),
    (dict(up_kernel=0), ValueError, 'sapa: up_kernel must be >= 1, got 0'),
    (dict(scale_factor=1), ValueError, 'sapa: scale_factor must be >= 2, got 1'),
    (dict(scale_factor=2.5), TypeError, 'sapa: scale_factor must be an int, got float 2.5'),
    (dict(channels=0), ValueError, 'sapa: channels must be >= 1, got 0'),
    (dict(embedding_dim=0), ValueError, 'sapa: embedding_dim must be >= 1, got 0'),
    (dict(guidance_channels=0), ValueError, 'sapa: guidance_channels must be >= 1, got 0'),
    (dict(query_mode='cat'), ValueError, r"sapa: query_mode must be one of \('encoder', 'gated', 'concat'\), got "
                                         r"'cat'"),
    (dict(value_embed=1), TypeError, 'sapa: value_embed must be True or False, got 1'),
    (dict(qkv_bias='yes'), TypeError, "sapa: qkv_bias must be True or False, got 'yes'"),
])
def test_constructor_errors_name_the_argument(kwargs, error, message):
    with pytest.raises(error, match=f'^{message}'):
        SAPA(**dict(dict(channels=8), **kwargs))


def test_float_scale_factor_and_registry():
    assert SAPA(8, scale_factor=2.0).scale_factor == 2
    assert MODELS.get('sapa') is SAPA and SAPA.takes_guidance is True
    from mmcv.cnn import build_upsample_layer
    up = build_upsample_layer(dict(type='sapa', scale_factor=2, up_kernel=3, query_mode='gated'), channels=8)
    assert isinstance(up, SAPA) and up.up_kernel == 3 and up.gate is not None and up.channels == 8
    assert up.guidance_channels == 8 and up.embedding_dim == 64


@needs_openmmlab
@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_builds_in_scope(scope):
    import importlib

    from mmcv.cnn import build_upsample_layer
    importlib.import_module(f'{scope}.registry')
    with DefaultScope.overwrite_default_scope(scope):
        up = build_upsample_layer(dict(type='sapa', scale_factor=2), channels=8)
    assert isinstance(up, SAPA)


@needs_export
@pytest.mark.parametrize('query_mode', ['encoder', 'gated'])
def test_onnx_runtime_matches_pytorch(query_mode, tmp_path):
    pytest.importorskip('onnxruntime')
    from mmdynconv.deploy.export import export_onnx, parity
    torch.manual_seed(0)
    layer = SAPA(16, embedding_dim=8, query_mode=query_mode).eval()
    inputs = (torch.randn(1, 16, 5, 7), torch.randn(1, 16, 10, 14))
    export_onnx(layer, inputs, str(tmp_path / 'sapa.onnx'))
    assert parity(layer, str(tmp_path / 'sapa.onnx'), inputs)['max_rel'] < 1e-5


def test_release_names_convert():
    layer = SAPA(4, query_mode='gated', value_embed=True, embedding_dim=8)
    ours = layer.state_dict()
    names = {'norm_y': 'guidance_norm', 'norm_x': 'input_norm', 'qy': 'query', 'qx': 'decoder_query', 'k': 'key',
             'gate': 'gate', 'v': 'value'}
    release = {f'{theirs}.{leaf}': ours[f'{mine}.{leaf}'] for theirs, mine in names.items()
               for leaf in ('weight', 'bias')}
    assert convert_release_state_dict(release).keys() == ours.keys()
    assert release_name('q.weight') == 'query.weight'
    with pytest.raises(KeyError, match=r"sapa: not a parameter of the released SAPA modules: 'proj.weight'"):
        convert_release_state_dict(dict(release, **{'proj.weight': ours['key.weight']}))


# --- the release (github.com/poppinace/sapa, commit 5530ef8) -----------------------------------------------------
# Recorded by ``python tools/sapa_release_parity.py /path/to/sapa --record 5530ef8`` (torch 2.13 CPU, the release's
# CUDA-only sim / atn replaced by its own pure-PyTorch sim_ / atn_ of sapa/sapa/forward_check.py): float64 cases of
# its SAPA (SAPA.py) and SAPAExp (SAPAExp.py: q_mode 'gate' and 'cat', v_embed), each with the release-layout state
# dict, the inputs (x: its decoder feature, guidance: its encoder feature), its output and the gradients for the
# output gradient linspace(-1, 1).

RELEASE = torch.load(Path(__file__).parents[1] / 'fixtures' / 'sapa_release_5530ef8.pt', weights_only=True)


@pytest.mark.parametrize('record', RELEASE['records'], ids=lambda r: r['variant'])
def test_matches_the_release(record):
    layer = SAPA(record['channels'], record['scale_factor'], up_kernel=record['up_kernel'],
                 embedding_dim=record['embedding_dim'], guidance_channels=record['guidance_channels'],
                 **record['options']).double()
    layer.load_state_dict(convert_release_state_dict(record['state_dict']), strict=True)
    x, g = record['x'].clone().requires_grad_(), record['guidance'].clone().requires_grad_()
    out = layer(x, g)
    out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out))
    assert_close(out, record['output'], 'output')
    params = dict(layer.named_parameters())
    got = dict(x=x.grad, guidance=g.grad, **{k: params[release_name(k)].grad for k in record['state_dict']})
    assert sorted(got) == sorted(record['grads'])
    for name, expected in record['grads'].items():
        assert_close(got[name], expected, f'grad of {name}')
