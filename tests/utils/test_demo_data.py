"""Demo data generator: determinism, argument checks, and that the real mmdet / mmseg datasets and metrics read it."""
import filecmp
import json
import os.path as osp

import numpy as np
import pytest
from tool_runner import run_tool

COCO_CLASSES = ('circle', 'rectangle', 'triangle', 'star')
ADE_CLASSES = ('wall', 'ball', 'box', 'tent', 'flower')


def test_deterministic_given_seed(tmp_path):
    args = ['--num-train', '3', '--num-val', '2', '--size', '64', '--max-size', '32']
    for name, seed in (('a', '5'), ('b', '5'), ('c', '6')):
        run_tool('tools/generate_demo_data.py', '--out', str(tmp_path / name), '--seed', seed, *args)
    for rel in ('coco/annotations/instances_train2017.json', 'coco/val2017/000001.jpg',
                'ade20k/annotations/training/ADE_training_00000002.png'):
        assert filecmp.cmp(tmp_path / 'a' / rel, tmp_path / 'b' / rel, shallow=False)
    assert not filecmp.cmp(tmp_path / 'a' / 'coco/annotations/instances_train2017.json',
                           tmp_path / 'c' / 'coco/annotations/instances_train2017.json', shallow=False)


@pytest.mark.parametrize('args,message', [
    (['--seed', '-1'], '--seed must be >= 0'),
    (['--num-train', '0'], '--num-train must be >= 1'),
    (['--size', '32'], '--size must be in [64, 2048]'),
    (['--min-objects', '3', '--max-objects', '2'], '--max-objects must be >= --min-objects'),
    (['--min-size', '30', '--max-size', '20'], '--max-size must be in [--min-size, --size]'),
    (['--task', 'detection'], "invalid choice: 'detection'"),
])
def test_bad_arguments(tmp_path, args, message):
    proc = run_tool('tools/generate_demo_data.py', '--out', str(tmp_path), *args, check=False)
    assert proc.returncode == 2 and message in proc.stdout


def test_coco_dataset_and_metric_read_it(demo_data):
    from mmdet.datasets import CocoDataset
    from mmdet.evaluation import CocoMetric
    from mmdet.utils import register_all_modules
    register_all_modules()
    root = osp.join(demo_data, 'coco') + '/'
    ann = json.load(open(root + 'annotations/instances_val2017.json'))
    assert {c['name'] for c in ann['categories']} == set(COCO_CLASSES)
    assert len(ann['annotations']) >= 2 * len(ann['images'])  # several objects per image
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True, with_mask=True)]
    ds = CocoDataset(data_root=root, ann_file='annotations/instances_val2017.json', data_prefix=dict(img='val2017/'),
                     metainfo=dict(classes=COCO_CLASSES), pipeline=pipeline, test_mode=True)
    assert len(ds) == 4
    item = ds[0]
    assert item['img'].shape == (96, 96, 3) and len(item['gt_bboxes']) == len(item['gt_masks']) > 0
    masks = item['gt_masks'].to_ndarray()
    boxes = item['gt_bboxes'].tensor.numpy()
    for m, (x0, y0, x1, y1) in zip(masks, boxes):  # every mask lies inside its box
        ys, xs = np.nonzero(m)
        assert xs.min() >= x0 - 1 and xs.max() <= x1 and ys.min() >= y0 - 1 and ys.max() <= y1
    # ground truth fed back as predictions must score a perfect bbox and segm mAP
    metric = CocoMetric(ann_file=root + 'annotations/instances_val2017.json', metric=['bbox', 'segm'])
    metric.dataset_meta = ds.metainfo
    import torch
    for i in range(len(ds)):
        d = ds[i]
        pred = dict(bboxes=d['gt_bboxes'].tensor, scores=torch.ones(len(d['gt_bboxes'])),
                    labels=torch.as_tensor(d['gt_bboxes_labels']), masks=torch.as_tensor(d['gt_masks'].to_ndarray()))
        metric.process({}, [dict(img_id=d['img_id'], ori_shape=d['ori_shape'], pred_instances=pred)])
    results = metric.evaluate(len(ds))
    assert results['coco/bbox_mAP'] == pytest.approx(1.0) and results['coco/segm_mAP'] > 0.9


def test_ade20k_dataset_and_metric_read_it(demo_data):
    import torch
    from mmengine.structures import PixelData
    from mmseg.datasets import ADE20KDataset
    from mmseg.evaluation import IoUMetric
    from mmseg.structures import SegDataSample
    from mmseg.utils import register_all_modules
    register_all_modules()
    full = ADE20KDataset.METAINFO['classes']
    assert [full.index(c) + 1 for c in ADE_CLASSES] == [1, 120, 42, 115, 67]  # the generator's PNG values
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', reduce_zero_label=True)]
    ds = ADE20KDataset(data_root=osp.join(demo_data, 'ade20k'), metainfo=dict(classes=ADE_CLASSES),
                       data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
                       pipeline=pipeline)
    assert len(ds) == 4
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = ds.metainfo
    seen = set()
    for i in range(len(ds)):
        seg = ds[i]['gt_seg_map']
        seen |= set(np.unique(seg).tolist())
        label = torch.as_tensor(seg.astype(np.int64))[None]
        sample = SegDataSample()
        sample.pred_sem_seg = PixelData(data=label)
        sample.gt_sem_seg = PixelData(data=label)
        metric.process({}, [sample.to_dict()])
    assert seen <= set(range(len(ADE_CLASSES))) and 0 in seen and len(seen) >= 3
    assert metric.evaluate(len(ds))['mIoU'] == pytest.approx(100.0)


def test_missing_data_names_the_path(tmp_path):
    missing = tmp_path / 'nowhere'
    proc = run_tool('tools/train.py', 'configs/demo/faster-rcnn_tiny-r50_fpn_shapes.py', '--work-dir',
                    str(tmp_path / 'wd'), '--cfg-options', f'train_dataloader.dataset.data_root={missing}/',
                    check=False)
    assert proc.returncode != 0
    assert 'FileNotFoundError' in proc.stdout and f"train_dataloader.dataset.data_root: data path '{missing}/'" \
        in proc.stdout


def test_evaluation_data_unchanged(tmp_path):
    """The default task is byte-for-byte what the generator wrote before the pretraining options existed."""
    import hashlib
    run_tool('tools/generate_demo_data.py', '--out', str(tmp_path), '--seed', '5', '--task', 'det', '--num-train', '3',
             '--num-val', '2', '--size', '64', '--max-size', '32')
    digest = hashlib.sha256((tmp_path / 'coco/annotations/instances_train2017.json').read_bytes()).hexdigest()
    assert digest == '021e6d48121b0d89ac6d8926e3553e496a8d6c91c72c4f27fbb6f9f86b7f8063'


def test_pretraining_task_other_shapes_and_colours(tmp_path):
    import cv2
    run_tool('tools/generate_demo_data.py', '--out', str(tmp_path), '--seed', '1', '--task', 'det', '--num-train',
             '4', '--num-val', '1', '--size', '64', '--min-size', '16', '--max-size', '40', '--shapes',
             'hexagon,cross,ellipse,arrow', '--palette', 'saturated')
    ann = json.load(open(tmp_path / 'coco/annotations/instances_train2017.json'))
    assert [c['name'] for c in ann['categories']] == ['hexagon', 'cross', 'ellipse', 'arrow']
    assert ann['annotations'] and not (tmp_path / 'ade20k').exists()
    from pycocotools import mask as mask_util
    img = cv2.imread(str(tmp_path / 'coco/train2017/000000.jpg')).astype(float)
    for a in (a for a in ann['annotations'] if a['image_id'] == 1):
        rle = mask_util.merge(mask_util.frPyObjects(a['segmentation'], 64, 64))
        pixels = img[mask_util.decode(rle).astype(bool)]
        colour = np.median(pixels, 0)  # a saturated fill: its smallest channel is far below its largest
        assert colour.max() - colour.min() > 120, colour


@pytest.mark.parametrize('args,message', [
    (['--shapes', 'hexagon,blob', '--task', 'det'], '--shapes must be distinct names from'),
    (['--shapes', 'hexagon'], "the ADE20K format maps only"),
    (['--palette', 'neon'], "invalid choice: 'neon'"),
])
def test_bad_shape_options(tmp_path, args, message):
    proc = run_tool('tools/generate_demo_data.py', '--out', str(tmp_path), *args, check=False)
    assert proc.returncode == 2 and message in proc.stdout, proc.stdout
