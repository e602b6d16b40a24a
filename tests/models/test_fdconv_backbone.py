"""Paper placement backbones: FDConvResNet (mmdet) and FDConvResNetV1c (mmseg)."""
import importlib

import pytest
import torch
from mmengine.registry import DefaultScope
from torch import nn

from mmdynconv.layers import FDConv

BACKBONES = [('mmdet', 'FDConvResNet'), ('mmseg', 'FDConvResNetV1c')]


def _build(scope, type_name, **kwargs):
    registry = importlib.import_module(f'{scope}.registry').MODELS
    importlib.import_module(f'{scope}.models')
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(dict(type=type_name, **kwargs))


@pytest.mark.slow
@pytest.mark.parametrize('scope,type_name', BACKBONES)
def test_resnet50_placement_and_frozen_stage(scope, type_name):
    model = _build(scope, type_name, depth=50, frozen_stages=1)
    model.train()
    layers = {name: m for name, m in model.named_modules() if isinstance(m, FDConv)}
    assert len(layers) == 48 and all(m.dynamic for m in layers.values())
    assert sum(m.fbm is not None for m in layers.values()) == 16
    assert all((m.fbm is not None) == name.endswith('conv2') for name, m in layers.items())
    assert {name.rsplit('.', 1)[-1] for name in layers} == {'conv1', 'conv2', 'conv3'}
    for name, m in model.named_modules():  # stem and shortcut projections stay plain convs
        if name.startswith(('conv1', 'stem')) or '.downsample.' in name + '.':
            assert not isinstance(m, FDConv)
    assert isinstance(model.layer1[0].downsample[0], nn.Conv2d)
    extra = sum(p.numel() for m in layers.values() for p in m.modulation_parameters())
    assert 3.0e6 < extra < 4.2e6  # published: about +3.6 M parameters on ResNet-50

    stem = model.stem if hasattr(model, 'stem') else model.conv1
    assert not any(p.requires_grad for p in stem.parameters())
    for name, p in model.layer1.named_parameters():
        assert p.requires_grad == ('.ksm_' in name or '.fbm.' in name), name
    assert all(p.requires_grad for p in model.layer2.parameters())
    assert not model.layer1.training and model.layer2.training


@pytest.mark.slow
def test_pretrained_checkpoint_is_converted_on_load(tmp_path):
    from mmdet.models.backbones import ResNet
    torch.manual_seed(0)
    plain = ResNet(depth=50, base_channels=32, norm_eval=False, zero_init_residual=False)
    plain.init_weights()
    path = tmp_path / 'resnet.pth'
    torch.save(plain.state_dict(), path)
    model = _build('mmdet', 'FDConvResNet', depth=50, base_channels=32, norm_eval=False,
                   fdconv_cfg=dict(type='FDConv', kernel_num=16),
                   init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    conv = model.layer3[1].conv2
    torch.testing.assert_close(conv.static_weight(), plain.layer3[1].conv2.weight.detach(), rtol=0, atol=1e-5)
    plain.train()
    model.train()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(plain(x), model(x)):
            assert float((a - b).abs().max() / a.abs().max()) < 3e-3  # fp32 FFT round trips through 16 blocks


@pytest.mark.slow
def test_mmseg_pretrained_argument(tmp_path):
    from mmseg.models.backbones import ResNetV1c
    plain = ResNetV1c(depth=50, base_channels=32, stem_channels=32)
    path = tmp_path / 'resnet_v1c.pth'
    torch.save(plain.state_dict(), path)
    model = _build('mmseg', 'FDConvResNetV1c', depth=50, base_channels=32, stem_channels=32, pretrained=str(path))
    model.init_weights()
    torch.testing.assert_close(model.layer4[0].conv1.static_weight(), plain.layer4[0].conv1.weight.detach(),
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(model.stem[0].weight, plain.stem[0].weight)


@pytest.mark.parametrize('kwargs,match', [
    (dict(stage_with_fdconv=(True, True)), 'one flag per stage'),
    (dict(fdconv_cfg=dict(type='DDF')), "type='FDConv'"),
    (dict(dcn=dict(type='DCN', deform_groups=1, fallback_on_stride=False),
          stage_with_dcn=(False, True, False, False)), 'not a plain nn.Conv2d'),
])
def test_bad_backbone_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _build('mmdet', 'FDConvResNet', depth=50, base_channels=8, **kwargs)


@pytest.mark.parametrize('scope,type_name', BACKBONES)
def test_basic_block_depths_place_conv1_and_conv2(scope, type_name):
    """ResNet-18/34: conv1 and conv2 of every BasicBlock (16 for depth 18) become FDConv; stem and shortcuts plain."""
    net = _build(scope, type_name, depth=18, base_channels=8,
                 fdconv_cfg=dict(type='FDConv', kernel_num=4, dynamic_min_channels=4))
    fd = [n for n, m in net.named_modules() if isinstance(m, FDConv)]
    assert len(fd) == 16 and all(n.startswith('layer') and n.rsplit('.', 1)[1] in ('conv1', 'conv2') for n in fd)
    assert not any('downsample' in n for n in fd)


@pytest.mark.parametrize('scope,type_name', [('mmdet', 'DynamicConvResNet'), ('mmseg', 'DynamicConvResNetV1c')])
def test_dynamic_conv_resnet_places_any_conv_type(scope, type_name):
    """Any registered conv in conv1/conv2/conv3 of the flagged stages; stem and shortcuts plain; frozen stages frozen
    entirely for a layer without modulation parameters."""
    import importlib

    from mmengine.registry import MODELS, DefaultScope

    from mmdynconv.layers import ODConv
    importlib.import_module(f'{scope}.models')
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(dict(type=type_name, depth=50, base_channels=16, frozen_stages=1,
                                  block_conv_cfg=dict(type='ODConv', kernel_num=2),
                                  stage_with_block_conv=(True, False, True, True)))
    layers = [n for n, m in model.named_modules() if isinstance(m, ODConv)]
    assert len(layers) == 3 * (3 + 6 + 3) and not any(n.startswith('layer2.') for n in layers)
    assert not any(p.requires_grad for p in model.layer1.parameters())
    with pytest.raises(ValueError, match='stage_with_block_conv'):
        MODELS.build(dict(type=type_name, depth=50, block_conv_cfg=dict(type='ODConv'), stage_with_block_conv=(True,)))
    with pytest.raises(ValueError, match='block_conv_cfg'):
        MODELS.build(dict(type=type_name, depth=50, block_conv_cfg='ODConv'))


@pytest.mark.parametrize('ksm_norm_eval', [False, True])
def test_ksm_norms_train_under_norm_eval(ksm_norm_eval):
    """norm_eval / frozen stages freeze the backbone BNs; the KSM BNs (no pretrained statistics) keep training unless
    ksm_norm_eval=True asks for the release's behaviour (docs/comparison.md: fine-tuning spikes without this)."""
    import importlib

    from mmengine.registry import MODELS, DefaultScope

    from mmdynconv.layers.kernel_spatial_modulation import KernelSpatialModulationGlobal
    importlib.import_module('mmdet.models')
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(dict(type='FDConvResNet', depth=50, base_channels=16, norm_eval=True, frozen_stages=1,
                                  ksm_norm_eval=ksm_norm_eval,
                                  fdconv_cfg=dict(type='FDConv', kernel_num=4, dynamic_min_channels=4)))
    model.train()
    ksm = [m.norm for m in model.modules() if isinstance(m, KernelSpatialModulationGlobal)]
    assert len(ksm) == 48 and all(n.training != ksm_norm_eval for n in ksm)
    assert not model.bn1.training and not model.layer4[0].bn1.training   # norm_eval still freezes the others
    model.eval()
    assert not any(n.training for n in ksm)


def test_batch_one_training_in_a_frozen_stage():
    """A KSM BatchNorm kept training inside a frozen (eval-mode) stage meets batch 1 like any training KSM: it
    normalises with its running statistics instead of failing (found by the whole-model benchmark at batch 1)."""
    from mmengine.registry import MODELS
    importlib.import_module('mmdet.models')
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(dict(type='FDConvResNet', depth=50, base_channels=16, norm_eval=True, frozen_stages=1,
                                  fdconv_cfg=dict(type='FDConv', kernel_num=4, dynamic_min_channels=4)))
    model.train()
    assert not model.layer1.training or not model.layer1[0].conv2.ksm_global.training
    outs = model(torch.randn(1, 3, 32, 32))
    sum(o.sum() for o in outs).backward()
    assert all(torch.isfinite(o).all() for o in outs)
