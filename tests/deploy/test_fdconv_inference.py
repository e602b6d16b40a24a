"""FDConv inference mode (mmdynconv/layers/fdconv_inference.py): same outputs as the normal forward, cache rebuilt
when the spectrum changes, normal forward when training or when gradients are on, off switch."""
import functools

import pytest
import torch

from mmdynconv.layers import FDConv
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
    assert 'forward' in layer.__dict__
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
    assert 'forward' not in layer.__dict__ and '_inference_candidates' not in layer.__dict__


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
    plain = FDConv(8, 8, 3, padding=1)  # min(Ci, Co) <= 16: a plain conv
    conv = torch.nn.Conv2d(3, 3, 1)
    for m in (plain, conv):
        fdconv_inference_mode(m)
        assert 'forward' not in m.__dict__
