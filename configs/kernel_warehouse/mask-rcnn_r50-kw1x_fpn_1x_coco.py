# Mask R-CNN R50-FPN 1x COCO with KernelWarehouse (1x) in the ResNet-50, as the authors' detection release
# (OSVAI/KernelWarehouse, detection/configs/kernelwarehouse/resnet50): one warehouse per stage, every bottleneck conv
# (but stage 1's first conv1) and the three strided shortcut projections drawing on one (KWResNet), AdamW (lr 1e-4,
# weight decay 0.05, none on norms), the DETR-style multi-scale / crop augmentation, 12 epochs (steps at 8 and 11),
# stage 1 frozen, BatchNorms in eval mode.
# One difference: the release fine-tunes its KW ImageNet checkpoint with the temperature at 0 throughout; here the
# backbone starts from an ordinary ResNet-50 checkpoint (the default below): each conv's weight fills its assigned
# warehouse cells and sets its temperature to 1, so step 0 is the plain network, and TemperatureAnnealHook lowers τ
# linearly to 0 over the first epoch (docs/kernel_warehouse.md). Frozen stage 1 keeps its attention and the
# warehouses trainable. Without network access pass a local checkpoint:
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/resnet50.pth
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdynconv'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        type='KWResNet',
        kw_cfg=dict(type='KernelWarehouse', cell_num_ratio=1, reduction=0.0625),
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')))
custom_hooks = [dict(type='TemperatureAnnealHook', start=1.0, end=0.0, anneal=1, by_epoch=True)]

scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333), (672, 1333), (704, 1333),
          (736, 1333), (768, 1333), (800, 1333)]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomChoice', transforms=[
        [dict(type='RandomChoiceResize', scales=scales, keep_ratio=True)],
        [dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)], keep_ratio=True),
         dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
         dict(type='RandomChoiceResize', scales=scales, keep_ratio=True)]]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}))
