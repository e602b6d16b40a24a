"""The ``'FDConv'`` conv layer: registration in both scopes, fallback rule, conversion from plain convs, identity at
initialisation, lean forward against the oracle, edge cases and argument errors."""
import importlib

import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer
from mmengine.model import BaseModule
from mmengine.registry import DefaultScope
from torch import nn
from torch_support import needs_openmmlab

from mmdynconv.layers import FDConv


def _rel(a, b):
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@needs_openmmlab
@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_build_conv_layer_in_scope(scope):
    importlib.import_module(f'{scope}.models')
    with DefaultScope.overwrite_default_scope(scope):
        layer = build_conv_layer(dict(type='FDConv', kernel_num=8), 32, 48, 3, stride=2, padding=1, dilation=1,
                                 groups=1, bias=False)
    assert isinstance(layer, FDConv) and layer.dynamic and layer.use_fbm and layer.bias is None
    assert layer(torch.randn(2, 32, 9, 9)).shape == (2, 48, 5, 5)


def test_fallback_rule_and_plain_state_dict():
    stem = FDConv(3, 64, 7, stride=2, padding=3, bias=False)
    assert not stem.dynamic and stem.weight.shape == (64, 3, 7, 7)
    assert not FDConv(16, 64, 3, padding=1).dynamic            # min(Ci, Co) = 16 is not > 16
    assert not FDConv(32, 32, 5, padding=2).dynamic            # k not in (1, 3)
    assert FDConv(17, 64, 1).dynamic and not FDConv(17, 64, 1).use_fbm
    assert FDConv(32, 32, 5, padding=2, dynamic_kernel_sizes=(1, 3, 5), kernel_num=4).dynamic
    assert FDConv(8, 8, 3, padding=1, dynamic_min_channels=4, kernel_num=4).dynamic
    grouped = FDConv(8, 8, 3, padding=1, groups=4)
    assert not grouped.dynamic and grouped.weight.shape == (8, 2, 3, 3)
    conv = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
    assert not stem.load_state_dict(conv.state_dict()).missing_keys
    x = torch.randn(1, 3, 20, 20)
    assert torch.equal(stem(x), conv(x))


@pytest.mark.parametrize('ci,co,k,stride,bias', [(24, 32, 3, 1, False), (21, 19, 3, 2, True), (40, 24, 1, 1, False),
                                                 (18, 36, 1, 2, True)])
def test_converted_layer_reproduces_conv(ci, co, k, stride, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(ci, co, k, stride=stride, padding=k // 2, bias=bias)
    layer = FDConv(ci, co, k, stride=stride, padding=k // 2, bias=bias, kernel_num=16)
    result = layer.load_state_dict(conv.state_dict(), strict=False)
    assert not result.unexpected_keys and 'spectrum' not in result.missing_keys
    assert all(key.startswith(('ksm_', 'fbm.')) for key in result.missing_keys)
    torch.testing.assert_close(layer.static_weight(), conv.weight.detach(), rtol=0, atol=1e-5)
    x = torch.randn(3, ci, 11, 10)
    for mode in (True, False):
        layer.train(mode)
        with torch.no_grad():
            assert _rel(layer(x), conv(x)) < 1e-4
    # a converted layer also loads back into a fallback (plain) layer
    plain = FDConv(ci, co, k, stride=stride, padding=k // 2, bias=bias, dynamic_min_channels=64)
    plain.load_state_dict(layer.state_dict(), strict=False)
    torch.testing.assert_close(plain.weight, conv.weight, rtol=0, atol=1e-5)


def _perturb_modulation(layer):
    """Modulation parameters away from their initialisation (a layer that is not fresh)."""
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in layer.modulation_parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)


@pytest.mark.parametrize('ci,co,k,stride,bias,fbm', [(24, 32, 3, 1, False, True), (21, 19, 3, 2, True, True),
                                                     (24, 24, 3, 1, True, False), (40, 24, 1, 1, False, False),
                                                     (18, 36, 1, 2, True, False)])
@pytest.mark.parametrize('perturb', [False, True])
def test_converted_layer_is_the_plain_conv_at_step_0(ci, co, k, stride, bias, fbm, perturb):
    """After loading a plain weight every attention is exactly 1 and π exactly 1/n, in train and eval mode (KSM's
    BatchNorm on batch or running statistics), so the layer is the plain conv up to the fp32 kernel build."""
    torch.manual_seed(0)
    conv = nn.Conv2d(ci, co, k, stride=stride, padding=k // 2, bias=bias).double()
    layer = FDConv(ci, co, k, stride=stride, padding=k // 2, bias=bias, kernel_num=16, use_fbm=fbm).double()
    if perturb:
        _perturb_modulation(layer)
    layer.load_state_dict(conv.state_dict(), strict=False)
    x = torch.randn(3, ci, 11, 10, dtype=torch.float64)
    g = x.mean((2, 3))
    for mode in (True, False):
        layer.train(mode)
        in_att, out_att, pos_att, kernel_att = layer.ksm_global(g)
        for att in (in_att, out_att) + ((pos_att,) if k > 1 else ()):
            assert torch.equal(att, torch.ones_like(att))
        assert torch.equal(kernel_att, torch.full_like(kernel_att, 1 / 16))
        assert not layer.ksm_local.weight.any()
        if fbm:
            att = layer.fbm.band_attention(x)
            assert torch.equal(att, torch.ones_like(att))
        with torch.no_grad():
            assert _rel(layer(x), conv(x)) < 1e-6, mode
            assert _rel(layer(x), F.conv2d(x, layer.static_weight().double(), layer.bias, layer.stride,
                                           layer.padding)) < 1e-6, mode


def test_offline_converted_spectrum_starts_at_the_plain_conv():
    """A ``spectrum`` without any KSM/FBM key (what tools/convert_fdconv_checkpoint.py writes) is a converted plain
    kernel: the modulation starts exactly at the identity too. A full FDConv state dict keeps its modulation."""
    torch.manual_seed(0)
    conv = nn.Conv2d(24, 32, 3, padding=1, bias=False)
    source = FDConv(24, 32, 3, padding=1, bias=False, kernel_num=8)
    source.load_state_dict(conv.state_dict(), strict=False)
    layer = FDConv(24, 32, 3, padding=1, bias=False, kernel_num=8)
    _perturb_modulation(layer)
    layer.load_state_dict({'spectrum': source.spectrum.detach().clone()}, strict=False)
    assert not layer.ksm_global.in_head.weight.any() and not layer.ksm_local.weight.any()
    assert not layer.fbm.weight.any()
    x = torch.randn(2, 24, 9, 9)
    assert _rel(layer(x), conv(x)) < 1e-5
    trained = FDConv(24, 32, 3, padding=1, bias=False, kernel_num=8)
    _perturb_modulation(trained)
    layer.load_state_dict(trained.state_dict())
    torch.testing.assert_close(layer(x), trained(x), rtol=0, atol=0)


def test_conversion_rejects_wrong_shape():
    layer = FDConv(24, 32, 3, padding=1, kernel_num=4)
    with pytest.raises(RuntimeError, match='size mismatch for weight'):
        layer.load_state_dict(nn.Conv2d(24, 16, 3).state_dict(), strict=False)


def test_identity_at_initialisation():
    layer = FDConv(24, 32, 3, padding=1, kernel_num=8)
    x = torch.randn(2, 24, 12, 12)
    assert torch.equal(layer.fbm(x), x)
    in_att, out_att, pos_att, kernel_att = layer.ksm_global(x.mean((2, 3)))
    for att in (in_att, out_att, pos_att):
        assert (att - 1).abs().max() < 1e-4
    assert (kernel_att * 8 - 1).abs().max() < 1e-4
    expected = F.conv2d(x, layer.static_weight(), padding=1)
    assert _rel(layer(x).detach(), expected) < 1e-4


@pytest.mark.parametrize('ci,co,k,stride,n,shape', [
    (17, 21, 3, 1, 8, (2, 9, 7)),    # odd Ci·k, N = 63·26 = 1638 not divisible by 8
    (20, 24, 3, 2, 7, (3, 9, 9)),    # stride 2, odd size
    (24, 20, 1, 1, 5, (2, 6, 5)),    # k = 1
    (20, 24, 3, 1, 4, (1, 6, 6)),    # batch 1
])
def test_forward_matches_reference_in_training(ci, co, k, stride, n, shape):
    torch.manual_seed(0)
    layer = FDConv(ci, co, k, stride=stride, padding=k // 2, kernel_num=n, bias=True)
    with torch.no_grad():  # move every branch away from its identity initialisation
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    b, h, w = shape
    x = torch.randn(b, ci, h, w)
    outputs = []
    for mode in ('export', 'default'):   # the pure-PyTorch formulation, then the lean path
        layer.zero_grad()
        xl = x.clone().requires_grad_()
        y = layer.set_mode(mode)(xl)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outputs.append((y.detach(), xl.grad, {n_: p.grad.clone() for n_, p in layer.named_parameters()}))
    (y_ref, gx_ref, gp_ref), (y, gx, gp) = outputs
    assert y.shape == (b, co, (h - 1) // stride + 1, (w - 1) // stride + 1)
    assert _rel(y, y_ref) < 2e-5 and _rel(gx, gx_ref) < 5e-5
    for name in gp_ref:
        assert _rel(gp[name], gp_ref[name]) < 5e-5, name


def test_batch_one_training_uses_running_statistics():
    layer = FDConv(24, 32, 3, padding=1, kernel_num=4).train()
    before = layer.ksm_global.norm.running_mean.clone()
    x = torch.randn(1, 24, 8, 8, requires_grad=True)
    layer(x).sum().backward()
    assert torch.equal(layer.ksm_global.norm.running_mean, before)
    assert x.grad is not None and layer.ksm_global.fc_weight.grad is not None
    layer(torch.randn(2, 24, 8, 8))
    assert not torch.equal(layer.ksm_global.norm.running_mean, before)


def test_autocast_output_dtype():
    layer = FDConv(24, 32, 3, padding=1, kernel_num=4)
    x = torch.randn(2, 24, 8, 8)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.bfloat16
    assert _rel(y.float(), layer(x).detach()) < 3e-2


def test_generic_initialisers_leave_modulation_at_identity():
    class Wrapper(BaseModule):
        def __init__(self):
            super().__init__(init_cfg=[dict(type='Kaiming', layer=['Conv2d', 'Conv1d', 'Linear']),
                                       dict(type='Normal', std=1.0, layer='Linear')])
            self.body = nn.Sequential(FDConv(24, 32, 3, padding=1, kernel_num=4))

    model = Wrapper()
    model.init_weights()
    layer = model.body[0]
    assert torch.equal(layer.fbm.weight, torch.zeros_like(layer.fbm.weight))
    assert layer.ksm_global.in_head.weight.abs().max() < 1e-4
    assert torch.equal(layer.ksm_local.weight, torch.full_like(layer.ksm_local.weight, 1e-6))


def test_init_weights_resets_to_identity():
    layer = FDConv(24, 32, 3, padding=1, kernel_num=4)
    with torch.no_grad():
        for p in layer.parameters():
            p.fill_(0.5)
    layer.init_weights()
    assert torch.equal(layer.fbm.weight, torch.zeros_like(layer.fbm.weight))
    assert layer.ksm_global.act.scale.item() == 1.0
    std = layer.static_weight().std()
    assert 0.5 < float(std / (2 / (32 * 9)) ** 0.5) < 1.5   # Kaiming-normal, fan_out


def test_modulation_parameters():
    layer = FDConv(24, 32, 3, padding=1, kernel_num=4)
    names = {id(p) for p in layer.modulation_parameters()}
    assert id(layer.spectrum) not in names
    assert names == {id(p) for n, p in layer.named_parameters() if n.startswith(('ksm_', 'fbm.'))}
    assert list(FDConv(3, 8, 3).modulation_parameters()) == []


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(in_channels=24.0), TypeError, 'in_channels'),
    (dict(out_channels=0), ValueError, 'out_channels'),
    (dict(kernel_size=(3, 1)), ValueError, 'square'),
    (dict(stride=0), ValueError, 'stride'),
    (dict(padding=(1, 1, 1)), ValueError, 'padding'),
    (dict(groups=2), ValueError, 'groups must be 1 for a dynamic layer'),
    (dict(groups=5), ValueError, 'divisible by groups'),
    (dict(bias='no'), TypeError, 'bias'),
    (dict(kernel_num=0), ValueError, 'kernel_num'),
    (dict(kernel_num=10 ** 6), ValueError, 'kernel_num'),
    (dict(use_fbm='yes'), TypeError, 'use_fbm'),
    (dict(dynamic_kernel_sizes=3), TypeError, 'dynamic_kernel_sizes'),
    (dict(local_kernel_size=4), ValueError, 'local_kernel_size'),
    (dict(fold_channel_attention=1), TypeError, 'fold_channel_attention'),
])
def test_bad_arguments(kwargs, error, match):
    args = dict(in_channels=24, out_channels=32, kernel_size=3, padding=1, kernel_num=4)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        FDConv(**args)


def test_bad_input():
    layer = FDConv(24, 32, 3, padding=1, kernel_num=4)
    with pytest.raises(ValueError, match=r'\(B, 24, H, W\)'):
        layer(torch.randn(2, 16, 8, 8))
    with pytest.raises(ValueError, match=r'\(B, 24, H, W\)'):
        layer(torch.randn(24, 8, 8))


def test_op_weight_and_attentions_are_the_ops_arguments():
    """forward = fdconv_dynamic_conv(x, op_weight(), attentions(x)) without FBM; a plain (fallback) layer has
    neither and says so."""
    from mmdynconv.ops import fdconv_dynamic_conv
    torch.manual_seed(0)
    layer = FDConv(32, 32, 3, padding=1, bias=True, kernel_num=4, use_fbm=False).eval()
    x = torch.randn(2, 32, 7, 9)
    y = fdconv_dynamic_conv(x, layer.op_weight(), layer.attentions(x), bias=layer.bias, padding=1)
    assert torch.equal(y, layer(x))
    plain = FDConv(8, 8, 3, padding=1)
    assert not plain.dynamic
    for call in (plain.op_weight, lambda: plain.attentions(x)):
        with pytest.raises(RuntimeError, match='only for a dynamic layer'):
            call()
