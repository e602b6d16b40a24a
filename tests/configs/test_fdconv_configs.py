"""FDConv configs: placement, protocol and pretrained conversion through the config's own init_cfg.
(tests/configs/test_configs.py builds every config and trains one step.)"""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope, init_default_scope

from mmdynconv.layers import FDConv

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAPER = sorted(glob.glob(osp.join(ROOT, 'configs', 'fdconv', '*.py')))
DEMO = sorted(glob.glob(osp.join(ROOT, 'configs', 'demo', '*fdconv*.py')))


def _build(cfg):
    init_default_scope(cfg.default_scope)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return MODELS.build(cfg.model)


def test_configs_present():
    names = {osp.basename(p) for p in PAPER + DEMO}
    assert names == {'faster-rcnn_r50-fdconv_fpn_1x_coco.py', 'mask-rcnn_r50-fdconv_fpn_adamw-ms-crop-amp-1x_coco.py',
                     'upernet_r50-fdconv_4xb4-160k_ade20k-512x512.py', 'faster-rcnn_tiny-r50-fdconv_fpn_shapes.py',
                     'semfpn_tiny-r50-fdconv_shapes.py'}


@pytest.mark.slow
@pytest.mark.parametrize('path', PAPER + DEMO, ids=osp.basename)
def test_backbone_placement(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports == dict(imports=['mmdynconv'], allow_failed_imports=False)
    backbone = _build(cfg).backbone
    layers = [m for m in backbone.modules() if isinstance(m, FDConv)]
    assert len(layers) == 48 and all(m.dynamic for m in layers) and sum(m.use_fbm for m in layers) == 16
    assert all(m.kernel_num == 64 for m in layers)


def test_mask_rcnn_protocol():
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'fdconv', 'mask-rcnn_r50-fdconv_fpn_adamw-ms-crop-amp-1x_coco.py'))
    optimizer = cfg.optim_wrapper.optimizer
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ('AdamW', 1e-4, 0.05)
    assert 'momentum' not in optimizer
    assert cfg.train_cfg.max_epochs == 12
    assert any(t['type'] == 'RandomChoice' for t in cfg.train_dataloader.dataset.pipeline)


@pytest.mark.slow
def test_paper_config_loads_an_ordinary_resnet_checkpoint(tmp_path):
    from mmdet.models.backbones import ResNet
    plain = ResNet(depth=50)
    path = tmp_path / 'resnet50.pth'
    torch.save(dict(plain.state_dict(), **{'fc.weight': torch.zeros(1000, 2048)}), path)
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'fdconv', 'faster-rcnn_r50-fdconv_fpn_1x_coco.py'))
    cfg.model.backbone.init_cfg.checkpoint = str(path)
    model = _build(cfg)
    model.backbone.init_weights()
    for name in ('layer1.0.conv1', 'layer2.0.conv2', 'layer4.2.conv3'):
        converted = model.backbone.get_submodule(name).static_weight()
        torch.testing.assert_close(converted, plain.get_submodule(name).weight.detach(), rtol=0, atol=1e-5)
    torch.testing.assert_close(model.backbone.conv1.weight, plain.conv1.weight)
