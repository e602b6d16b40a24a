# Comparison segmenter (tools/compare_layers.py): the demo semantic FPN at 64x64 crops, with mmdet's ResNet-50 at base
# width 16 as backbone (the layout of the detector-pretrained backbone, so both tasks fine-tune from the same
# weights). Data roots, seed, schedule and the pretrained / from-scratch set-up are merged in per run by the demo
# preset (experiments/demo_comparison).
_base_ = '../demo/semfpn_tiny-r50_shapes.py'

crop_size = (64, 64)
width = 16
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(_delete_=True, type='mmdet.ResNet', depth=50, base_channels=width, num_stages=4,
                  out_indices=(0, 1, 2, 3), frozen_stages=-1, norm_cfg=norm_cfg, norm_eval=False, style='pytorch',
                  init_cfg=None))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
