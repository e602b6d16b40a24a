"""Every mmdet / mmseg config under configs/ builds its model and runs one forward + backward on CPU on a tiny input
(the depth upsampling configs, an mmengine-only experiment model in experiments/depth_upsampling/configs, are trained
through tools/train.py in tests/experiments/test_depth_upsampling.py)."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True))


def det_batch(cfg, size):
    from mmdet.testing import demo_mm_inputs
    roi = cfg.model.get('roi_head', {})
    heads = roi.get('bbox_head', cfg.model.get('bbox_head', {}))
    num_classes = (heads[0] if isinstance(heads, list) else heads).get('num_classes', 80)
    return demo_mm_inputs(batch_size=2, image_shapes=[(3, size, size)] * 2, num_items=[3, 2],
                          num_classes=num_classes, with_mask='mask_head' in roi)


def seg_batch(cfg, size):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    head = cfg.model.decode_head
    num_classes = (head[0] if isinstance(head, list) else head).num_classes
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, size, size)))
        samples.append(s)
    return dict(inputs=[torch.randint(0, 256, (3, size, size), dtype=torch.uint8) for _ in range(2)],
                data_samples=samples)


def test_configs_found():
    names = {osp.relpath(c, ROOT) for c in CONFIGS}
    assert 'configs/demo/faster-rcnn_tiny-r50_fpn_shapes.py' in names and len(names) >= 9


@pytest.mark.slow
@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, osp.join(ROOT, 'configs')))
def test_config_builds_and_trains_one_step(path):
    cfg = Config.fromfile(path)
    imports = cfg.custom_imports['imports']
    assert imports[0] == 'mmdynconv' and all(i.startswith('mmdynconv') for i in imports), imports
    init_default_scope(cfg.default_scope)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        from mmengine.registry import MODELS
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)  # no init_weights: paper configs point at pretrained checkpoints
        model.train()
        size = 64
        if cfg.default_scope == 'mmseg':
            model.data_preprocessor.size = (size, size)
        batch = det_batch(cfg, size) if cfg.default_scope == 'mmdet' else seg_batch(cfg, size)
        data = model.data_preprocessor(batch, True)
        losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
