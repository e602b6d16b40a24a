"""FADE upsampler ('fade'): docs/fade.md semantics against a float64 oracle, options, edge cases, errors, building,
and the authors' release (a recorded fixture)."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import MODELS, DefaultScope
from torch_support import needs_openmmlab

from mmdynconv.layers import FADE
from mmdynconv.layers.fade_upsample import RELEASE_NAMES, convert_release_state_dict


def conv_by_unfold(t, conv):
    """``conv(t)`` (stride 1, 'same' padding, any groups) as unfold and a matrix product."""
    o, cin_g, k, _ = conv.weight.shape
    b, cin, h, w = t.shape
    g = cin // cin_g
    cols = F.unfold(t, k, padding=k // 2).view(b, g, cin_g * k * k, h * w)
    out = torch.einsum('gok,bgkl->bgol', conv.weight.reshape(g, o // g, cin_g * k * k), cols).reshape(b, o, h, w)
    return out if conv.bias is None else out + conv.bias.view(1, -1, 1, 1)


def nearest(t, s):
    return t.repeat_interleave(s, 2).repeat_interleave(s, 3)


def oracle(layer, x, guidance):
    """docs/fade.md written out: semi-shift kernels, softmax, reassembly by unfold, gate."""
    s, k = layer.scale_factor, layer.up_kernel
    b, c, h, w = x.shape
    logits = conv_by_unfold(conv_by_unfold(guidance, layer.encoder_compressor), layer.kernel_encoder) \
        + nearest(conv_by_unfold(conv_by_unfold(x, layer.decoder_compressor), layer.kernel_encoder), s)
    masks = logits.softmax(1)                                                            # (B, k², sH, sW)
    neighbours = nearest(F.unfold(x, k, padding=k // 2).view(b, c * k * k, h, w), s).view(b, c, k * k, s * h, s * w)
    up = (neighbours * masks[:, None]).sum(2)
    if layer.gate is None:
        return up
    gate = nearest(torch.sigmoid(conv_by_unfold(x, layer.gate)), s)
    return gate * guidance + (1 - gate) * up


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
    'no-gate': dict(gating=False),
    'k3-E8': dict(up_kernel=3, compressed_channels=8),
    'lite': dict(lite=True),
    'guidance-channels': dict(gating=False, guidance_channels=5),
    'encoder-kernel-1': dict(encoder_kernel=1, compressed_channels=4),
    'x3': dict(scale_factor=3, up_kernel=3),
}


@pytest.mark.parametrize('size', [(5, 7), (1, 1), (4, 4)], ids=lambda s: f'{s[0]}x{s[1]}')
@pytest.mark.parametrize('case', sorted(CASES))
def test_values_and_gradients_match_the_oracle(case, size):
    kwargs = dict(dict(scale_factor=2), **CASES[case])
    layer = perturbed(FADE(6, **kwargs))
    x, g = inputs(layer, 2, *size)
    out, grads = step(lambda m, a, b: m(a, b), layer, x, g)
    expected, expected_grads = step(oracle, layer, x, g)
    assert out.shape == (2, 6, layer.scale_factor * size[0], layer.scale_factor * size[1])
    assert_close(out, expected, 'output')
    names = ['x', 'guidance'] + [n for n, _ in layer.named_parameters()]
    for name, got, want in zip(names, grads, expected_grads):
        assert_close(got, want, f'grad of {name}')


def test_gating_off_is_the_reassembly_alone_and_lite_is_depthwise():
    assert FADE(8, gating=False).gate is None
    lite = FADE(8, lite=True)
    assert lite.compressed_channels == 25 and lite.kernel_encoder.groups == 25
    assert tuple(lite.kernel_encoder.weight.shape) == (25, 1, 3, 3)
    full = FADE(8)
    assert tuple(full.kernel_encoder.weight.shape) == (25, 64, 3, 3) and full.decoder_compressor.bias is None


def test_kernels_are_normalised_and_the_gate_mixes_the_guidance():
    layer = perturbed(FADE(4, up_kernel=3))
    x, g = inputs(layer, 1, 3, 5)
    masks = layer.kernels(x, g)
    assert masks.shape == (1, 9, 6, 10) and (masks > 0).all()
    assert_close(masks.sum(1), torch.ones(1, 6, 10, dtype=torch.float64), 'kernel sums')
    with torch.no_grad():   # a gate driven to 1 passes the guidance, to 0 the reassembly alone
        layer.gate.weight.zero_()
        layer.gate.bias.fill_(100.0)
        assert_close(layer(x, g), g, 'gate 1')
        layer.gate.bias.fill_(-100.0)
        ungated = FADE(4, up_kernel=3, gating=False).double()
        ungated.load_state_dict({k: v for k, v in layer.state_dict().items() if not k.startswith('gate.')})
        assert_close(layer(x, g), ungated(x, g), 'gate 0')


def test_initialisation_is_xavier_uniform_with_zero_biases():
    torch.manual_seed(0)
    layer = FADE(16)
    for name, p in layer.named_parameters():
        if name.endswith('bias'):
            assert not p.any(), name
        else:
            fan_in, fan_out = p.shape[1] * p[0, 0].numel(), p.shape[0] * p[0, 0].numel()
            assert p.abs().max() <= (6 / (fan_in + fan_out)) ** 0.5, name


def test_batch_one_training_and_empty_batch():
    layer = FADE(8, compressed_channels=16).train()
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
def test_guidance_layout_does_not_change_the_numbers(layout):
    layer = perturbed(FADE(6, compressed_channels=8))
    x, g = inputs(layer, 2, 4, 5)
    expected = layer(x, g)
    if layout == 'channels_last':
        g2 = g.detach().contiguous(memory_format=torch.channels_last)
    else:
        g2 = torch.zeros(2, 12, 8, 13, dtype=torch.float64)[:, ::2, :, 1:11]
        g2.copy_(g.detach())
    assert not g2.is_contiguous()
    assert_close(layer(x, g2), expected, layout)


def test_autocast_bfloat16():
    layer = FADE(8, compressed_channels=16)
    x, g = torch.randn(2, 8, 5, 7, requires_grad=True), torch.randn(2, 8, 10, 14, requires_grad=True)
    expected = layer(x, g)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = layer(x, g)
    assert out.dtype == torch.bfloat16
    assert_close(out.float(), expected.detach(), 'bfloat16 autocast', tol=0.05)
    out.float().sum().backward()
    assert x.grad.dtype == g.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()


def test_forward_errors_name_the_argument():
    layer = FADE(8, scale_factor=2)
    x, g = torch.randn(2, 8, 5, 7), torch.randn(2, 8, 10, 14)
    with pytest.raises(ValueError, match=r'^fade: input must be \(B, 8, H, W\), got \(2, 7, 5, 7\)'):
        layer(torch.randn(2, 7, 5, 7), g)
    with pytest.raises(ValueError, match=r'^fade: guidance must be \(B, 8, H, W\), got \(2, 3, 10, 14\)'):
        layer(x, torch.randn(2, 3, 10, 14))
    with pytest.raises(ValueError, match=r'^fade: guidance must be \(B, C_g, S·H, S·W\) = \(2, 8, 10, 14\) for an '
                                         r'input of shape \(2, 8, 5, 7\), got \(2, 8, 10, 15\)'):
        layer(x, torch.randn(2, 8, 10, 15))
    with pytest.raises(ValueError, match=r'= \(2, 8, 10, 14\) .* got \(1, 8, 10, 14\)'):
        layer(x, g[:1])
    with pytest.raises(TypeError, match=r'^fade: guidance must be a floating-point tensor, got torch.int64'):
        layer(x, g.long())
    with pytest.raises(TypeError, match='guidance'):
        layer(x)


@pytest.mark.parametrize('kwargs, error, message', [
    (dict(up_kernel=4), ValueError, 'fade: up_kernel must be odd, got 4'),
    (dict(encoder_kernel=2), ValueError, 'fade: encoder_kernel must be odd, got 2'),
    (dict(scale_factor=1), ValueError, 'fade: scale_factor must be >= 2, got 1'),
    (dict(scale_factor=2.5), TypeError, 'fade: scale_factor must be an int, got float 2.5'),
    (dict(channels=0), ValueError, 'fade: channels must be >= 1, got 0'),
    (dict(compressed_channels=0), ValueError, 'fade: compressed_channels must be >= 1, got 0'),
    (dict(gating='yes'), TypeError, "fade: gating must be True or False, got 'yes'"),
    (dict(lite=1), TypeError, 'fade: lite must be True or False, got 1'),
    (dict(guidance_channels=4), ValueError, r'fade: with gating=True, guidance_channels \(4\) must equal channels '
                                            r'\(8\)'),
    (dict(lite=True, compressed_channels=16), ValueError, 'fade: with lite=True, compressed_channels is '
                                                          'up_kernel² = 25; got 16'),
])
def test_constructor_errors_name_the_argument(kwargs, error, message):
    with pytest.raises(error, match=f'^{message}'):
        FADE(**dict(dict(channels=8), **kwargs))


def test_float_scale_factor_and_registry():
    assert FADE(8, scale_factor=2.0).scale_factor == 2
    assert MODELS.get('fade') is FADE and FADE.takes_guidance is True
    from mmcv.cnn import build_upsample_layer
    up = build_upsample_layer(dict(type='fade', scale_factor=2, up_kernel=3, gating=False), channels=8)
    assert isinstance(up, FADE) and up.up_kernel == 3 and up.gate is None and up.channels == 8


@needs_openmmlab
@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_builds_in_scope(scope):
    import importlib

    from mmcv.cnn import build_upsample_layer
    importlib.import_module(f'{scope}.registry')
    with DefaultScope.overwrite_default_scope(scope):
        up = build_upsample_layer(dict(type='fade', scale_factor=2), channels=8)
    assert isinstance(up, FADE)


def test_release_names_convert():
    layer = FADE(4, up_kernel=3, compressed_channels=8)
    ours = layer.state_dict()
    l2h = {'gate_generator.conv.weight': ours['gate.weight'], 'gate_generator.conv.bias': ours['gate.bias'],
           'ker_generator.compressor_en.weight': ours['encoder_compressor.weight'],
           'ker_generator.compressor_en.bias': ours['encoder_compressor.bias'],
           'ker_generator.compressor_de.weight': ours['decoder_compressor.weight'],
           'ker_generator.content_encoder.weight': ours['kernel_encoder.weight'],
           'ker_generator.content_encoder.bias': ours['kernel_encoder.bias']}
    assert convert_release_state_dict(l2h).keys() == ours.keys()
    assert set(RELEASE_NAMES.values()) == set(ours)
    with pytest.raises(KeyError, match=r"fade: not a parameter of the released FADE modules: \['aligner.conv.weight'"):
        convert_release_state_dict(dict(l2h, **{'aligner.conv.weight': ours['gate.weight']}))


# --- the release (github.com/poppinace/fade, commit e4de4db) -----------------------------------------------------
# Recorded by ``python tools/fade_release_parity.py FADE_L2H.py FADE_H2L.py --record e4de4db`` (torch 2.13 CPU, the
# release's mmcv carafe replaced by the tool's unfold stand-in): float64 cases of its FADE, SemiShiftUp and FADELite
# (FADE_L2H.py) and its ECCV FADE (FADE_H2L.py), each with the release-layout state dict, the inputs (x: its decoder
# feature, guidance: its encoder feature), its output and the gradients for the output gradient linspace(-1, 1).

RELEASE = torch.load(Path(__file__).parents[1] / 'fixtures' / 'fade_release_e4de4db.pt', weights_only=True)


@pytest.mark.parametrize('record', RELEASE['records'], ids=lambda r: f"{r['file'][:-3]}-{r['cls']}")
def test_matches_the_release(record):
    state = convert_release_state_dict(record['state_dict'])
    layer = FADE(record['channels'], 2, up_kernel=record['up_kernel'],
                 compressed_channels=state['decoder_compressor.weight'].shape[0], **record['options']).double()
    layer.load_state_dict(state, strict=True)
    x, g = record['x'].clone().requires_grad_(), record['guidance'].clone().requires_grad_()
    out = layer(x, g)
    out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out))
    assert_close(out, record['output'], 'output')
    params = dict(layer.named_parameters())
    got = dict(x=x.grad, guidance=g.grad, **{k: params[RELEASE_NAMES[k]].grad for k in record['state_dict']})
    assert sorted(got) == sorted(record['grads'])
    for name, expected in record['grads'].items():
        assert_close(got[name], expected, f'grad of {name}')
