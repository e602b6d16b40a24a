"""FDConv's forward modes (``FDConv.mode``): the inference mode (mmdynconv/layers/fdconv_inference.py) gives the
outputs of the default forward, rebuilds its cache when the spectrum changes and runs the default forward when
training or when gradients are on; the mode is validated, switched without touching the layer's methods, and
``fdconv_mode`` / ``export_mode`` restore each layer's previous mode."""
import copy
import functools

import pytest
import torch

from mmdynconv.deploy import export_mode
from mmdynconv.layers import FDConv
from mmdynconv.layers.fdconv import MODES, fdconv_mode
from mmdynconv.layers.fdconv_inference import candidate_kernels, fdconv_inference_mode
from mmdynconv.ops.fdconv_spectrum import band_kernels


def _layer(ci, co, k, n, **kw):
    torch.manual_seed(ci + co + k + n)
    layer = FDConv(ci, co, k, kernel_num=n, **kw).eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return layer


@pytest.mark.parametrize('ci,co,k,n,kw,shape', [
    (20, 24, 3, 4, dict(padding=1), (2, 20, 13, 11)),
    (18, 20, 3, 8, dict(stride=2, padding=2, dilation=2), (3, 18, 15, 12)),
    (24, 20, 1, 4, dict(stride=2), (2, 24, 9, 12)),
    (24, 17, 3, 1, dict(padding=1, bias=False), (1, 24, 7, 9)),  # n = 1: no kernel attention
])
def test_inference_mode_matches_forward(ci, co, k, n, kw, shape):
    layer = _layer(ci, co, k, n, **kw)
    x = torch.randn(shape)
    with torch.no_grad():
        ref = layer(x)
        layer.apply(fdconv_inference_mode)
        got = layer(x)
    assert layer.mode == 'inference' and '_inference_candidates' in layer.__dict__
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


def test_candidates_are_the_band_kernels_and_follow_the_spectrum():
    layer = _layer(20, 24, 3, 4, padding=1)
    cands = candidate_kernels(layer)
    expected = band_kernels(layer.spectrum, 24, 20, 3, 4, layer.band_order).reshape(4, -1)
    torch.testing.assert_close(cands, expected, rtol=1e-5, atol=1e-6)
    assert candidate_kernels(layer) is cands  # cached
    x = torch.randn(2, 20, 9, 9)
    layer.apply(fdconv_inference_mode)
    with torch.no_grad():
        layer.spectrum.mul_(1.5)  # in-place update (optimiser step): version bump
        got = layer(x)
    assert candidate_kernels(layer) is not cands
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    state['spectrum'] = state['spectrum'] * -0.5
    layer.load_state_dict(state)
    with torch.no_grad():
        got2 = layer(x)
        layer.apply(functools.partial(fdconv_inference_mode, enabled=False))
        ref2 = layer(x)
    torch.testing.assert_close(got2, ref2, rtol=1e-5, atol=1e-5 * ref2.abs().max().item())
    assert not torch.allclose(got, got2)
    assert layer.mode == 'default' and '_inference_candidates' not in layer.__dict__


def test_training_and_grad_use_the_normal_forward():
    layer = _layer(20, 24, 3, 4, padding=1)
    layer.apply(fdconv_inference_mode)
    x = torch.randn(2, 20, 9, 9)
    layer(x).sum().backward()  # gradients on: the op's path, gradients reach the spectrum
    assert layer.spectrum.grad is not None and layer.spectrum.grad.abs().sum() > 0
    assert '_inference_candidates' not in layer.__dict__
    layer.train()
    with torch.no_grad():
        layer(x)
    assert '_inference_candidates' not in layer.__dict__


def test_other_modules_untouched():
    conv = torch.nn.Conv2d(3, 3, 1)
    fdconv_inference_mode(conv)
    assert not hasattr(conv, 'mode')
    plain = FDConv(8, 8, 3, padding=1)  # min(Ci, Co) <= 16: a plain conv, the same in every mode
    x = torch.randn(1, 8, 5, 5)
    ref = plain(x)
    for mode in MODES:
        assert torch.equal(plain.set_mode(mode)(x), ref)


def test_modes_give_the_same_numbers_without_replacing_methods():
    layer = _layer(20, 24, 3, 4, padding=1)
    x = torch.randn(2, 20, 9, 9)
    assert layer.mode == 'default'
    with torch.no_grad():
        outputs = {mode: layer.set_mode(mode)(x) for mode in MODES}
    assert not {'forward', '_inference_candidates'} & set(layer.__dict__)   # 'export' was last: cache dropped
    for mode in ('inference', 'export'):
        torch.testing.assert_close(outputs[mode], outputs['default'], rtol=1e-5,
                                   atol=1e-5 * outputs['default'].abs().max().item())


def test_mode_is_validated():
    layer = _layer(20, 24, 3, 4, padding=1)
    message = r"FDConv: mode must be one of \('default', 'inference', 'export'\), got 'oracle'"
    for set_mode in (layer.set_mode, functools.partial(setattr, layer, 'mode')):
        with pytest.raises(ValueError, match=message):
            set_mode('oracle')
    with pytest.raises(ValueError, match=r"fdconv_mode: mode must be one of .*got 'fast'"):
        with fdconv_mode(layer, 'fast'):
            pass
    assert layer.mode == 'default'


@pytest.mark.parametrize('enter', [export_mode, functools.partial(fdconv_mode, mode='export')],
                         ids=['export_mode', 'fdconv_mode'])
def test_export_mode_restores_each_previous_mode(enter):
    """Layers in inference mode stay in it after an export (which used to switch them off), also after an error."""
    model = torch.nn.Sequential(_layer(20, 24, 3, 4, padding=1), _layer(24, 20, 1, 4), FDConv(8, 8, 3))
    model[0].mode = 'inference'
    state = copy.deepcopy(model.state_dict())
    with enter(model):
        assert [m.mode for m in model] == ['export'] * 3
    assert [m.mode for m in model] == ['inference', 'default', 'default']
    with pytest.raises(RuntimeError, match='inside'):
        with enter(model):
            raise RuntimeError('inside')
    assert [m.mode for m in model] == ['inference', 'default', 'default']
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
