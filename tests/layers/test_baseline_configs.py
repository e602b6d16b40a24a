"""configs/baselines: where the layers land, plain-checkpoint loading through a paper config's init_cfg, and the
temperature hook inside a real (short) Runner training run. (tests/configs/test_configs.py trains one step of each.)"""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope, init_default_scope
from torch import nn

from mmdynconv.layers import CARAFETorch, CondConv, DYConv, DySample, ODConv

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = {osp.basename(p): p for p in glob.glob(osp.join(ROOT, 'configs', 'baselines', '*.py'))}
CONV_CONFIGS = {'faster-rcnn_tiny-r50-condconv_fpn_shapes.py': CondConv,
                'faster-rcnn_tiny-r50-dyconv_fpn_shapes.py': DYConv,
                'faster-rcnn_tiny-r50-odconv_fpn_shapes.py': ODConv}
PAPER_CONFIGS = {'faster-rcnn_r50-odconv4x_fpn_1x_coco.py': ODConv,
                 'faster-rcnn_r50-condconv8x_fpn_1x_coco.py': CondConv}
UPSAMPLER_CONFIGS = {'faster-rcnn_tiny-r50_carafe-torch-fpn_shapes.py': CARAFETorch,
                     'faster-rcnn_tiny-r50_dysample-fpn_shapes.py': DySample,
                     'semfpn_tiny-r50_carafe-torch-fpn_shapes.py': CARAFETorch,
                     'semfpn_tiny-r50_dysample-fpn_shapes.py': DySample}


def _build(cfg):
    init_default_scope(cfg.default_scope)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return MODELS.build(cfg.model)


def test_configs_present():
    assert set(CONFIGS) == set(CONV_CONFIGS) | set(PAPER_CONFIGS) | set(UPSAMPLER_CONFIGS)


@pytest.mark.parametrize('name', list(CONV_CONFIGS) + [pytest.param(n, marks=pytest.mark.slow) for n in PAPER_CONFIGS])
def test_every_bottleneck_conv_is_the_layer(name):
    """DynamicConvResNet builds conv1/conv2/conv3 of the 16 bottlenecks; the stem and the 4 shortcuts stay plain."""
    cfg = Config.fromfile(CONFIGS[name])
    assert cfg.custom_imports == dict(imports=['mmdynconv'], allow_failed_imports=False)
    backbone = _build(cfg).backbone
    cls = {**CONV_CONFIGS, **PAPER_CONFIGS}[name]
    layers = {n for n, m in backbone.named_modules() if isinstance(m, cls)}
    assert layers == {f'layer{s}.{b}.conv{c}' for s, n in zip(range(1, 5), (3, 4, 6, 3)) for b in range(n)
                      for c in (1, 2, 3)}
    plain = [n for n, m in backbone.named_modules() if type(m) is nn.Conv2d and '.attention.' not in n]
    assert plain == ['conv1'] + [f'layer{s}.0.downsample.0' for s in range(1, 5)]


@pytest.mark.parametrize('name', UPSAMPLER_CONFIGS)
def test_fpn_upsamplers(name):
    neck = _build(Config.fromfile(CONFIGS[name])).neck
    assert len(neck.upsamplers) == 3 and all(type(u) is UPSAMPLER_CONFIGS[name] for u in neck.upsamplers)


@pytest.mark.slow
def test_paper_config_loads_an_ordinary_resnet_checkpoint(tmp_path):
    from mmdet.models.backbones import ResNet
    plain = ResNet(depth=50)
    path = tmp_path / 'resnet50.pth'
    torch.save(dict(plain.state_dict(), **{'fc.weight': torch.zeros(1000, 2048)}), path)
    cfg = Config.fromfile(CONFIGS['faster-rcnn_r50-odconv4x_fpn_1x_coco.py'])
    cfg.model.backbone.init_cfg.checkpoint = str(path)
    backbone = _build(cfg).backbone
    backbone.init_weights()
    gains = {'layer1.0.conv1': 0.25, 'layer2.0.conv2': 0.125, 'layer4.2.conv3': 0.25}  # 1x1: two sigmoids, 3x3: three
    for name, gain in gains.items():
        layer = backbone.get_submodule(name)
        assert layer.zero_logit_gain() == (gain, 1.0)
        expected = plain.get_submodule(name).weight.detach() / gain
        assert layer.weight.shape == (4, *expected.shape) and all(torch.equal(w, expected) for w in layer.weight)


@pytest.mark.slow
def test_temperature_hook_in_a_demo_training_run(demo_data, tmp_path):
    """One epoch (2 iterations) of the DY-Conv demo: τ = 15.5 at iteration 0 and 1 at iteration 1 (anneal = 1
    epoch of 2 iterations; ODConv's released schedule, τ_t = 30 − 29·(t + 1)/2), set on every DYConv before each
    training forward."""
    from mmengine.runner import Runner
    cfg = Config.fromfile(CONFIGS['faster-rcnn_tiny-r50-dyconv_fpn_shapes.py'])
    root = osp.join(demo_data, 'coco') + '/'
    cfg.merge_from_dict({'work_dir': str(tmp_path), 'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 100,
                         'default_hooks.checkpoint.interval': 100, 'default_hooks.logger.interval': 1,
                         'train_dataloader.dataset.data_root': root, 'train_dataloader.batch_size': 4,
                         'train_dataloader.num_workers': 0, 'train_dataloader.persistent_workers': False,
                         'val_dataloader.dataset.data_root': root, 'val_dataloader.num_workers': 0,
                         'val_dataloader.persistent_workers': False, 'test_dataloader': None, 'test_cfg': None,
                         'test_evaluator': None, 'val_evaluator.ann_file': root + 'annotations/instances_val2017.json'})
    runner = Runner.from_cfg(cfg)
    layers = [m for m in runner.model.modules() if isinstance(m, DYConv)]
    assert len(layers) == 48
    model_forward, seen = runner.model.forward, []

    def forward(*args, **kwargs):
        if runner.model.training:
            seen.append({m.temperature for m in layers})
        return model_forward(*args, **kwargs)

    runner.model.forward = forward
    runner.train()
    assert seen == [{15.5}, {1.0}]


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_dcn_slot_places_the_layer_in_every_conv2(scope):
    """The bottleneck's dcn slot puts the layer in the 16 3×3 conv2 only (mmdet ResNet / mmseg ResNetV1c)."""
    import importlib
    importlib.import_module(f'{scope}.registry')
    backbone = 'ResNet' if scope == 'mmdet' else 'ResNetV1c'
    with DefaultScope.overwrite_default_scope(scope):
        model = importlib.import_module(f'{scope}.registry').MODELS.build(dict(
            type=backbone, depth=50, base_channels=16, **({'stem_channels': 16} if scope == 'mmseg' else {}),
            dcn=dict(type='ODConv', kernel_num=2, fallback_on_stride=False), stage_with_dcn=(True,) * 4))
    layers = [n for n, m in model.named_modules() if isinstance(m, ODConv)]
    assert len(layers) == 16 and all(n.endswith('.conv2') for n in layers)
    model.eval()
    assert model(torch.randn(1, 3, 64, 64))[-1].shape[1] == 16 * 32
