# Comparison detector (tools/compare_layers.py): the demo Faster R-CNN (ResNet-50 at base width 16 + FPN) shrunk to
# 64x64 images and fewer proposals so that one fine-tuning run takes about a minute on one CPU core. Data roots,
# seed, schedule (iteration based) and the pretrained / from-scratch backbone set-up are written per run by
# the demo preset (experiments/demo_comparison); the variants inherit this file and change only the layer under study.
_base_ = '../demo/faster-rcnn_tiny-r50_fpn_shapes.py'

image_size = (64, 64)
model = dict(
    train_cfg=dict(rpn=dict(sampler=dict(num=64)), rpn_proposal=dict(nms_pre=300, max_per_img=100),
                   rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100), rcnn=dict(max_per_img=30)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
