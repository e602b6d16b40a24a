# Faster R-CNN R50-FPN 1x COCO (mmdet's SGD protocol) with DCD in conv1/conv2/conv3 of every bottleneck
# (DynamicConvResNet; the stem and the four shortcut projections stay plain, as in the authors' ResNet-50 DCD).
# The release (and, as far as we could read, the paper) reports ImageNet classification only: no published
# detection number exists for this config.
# Pretrained weights: an ordinary ResNet-50 checkpoint (the default below) loads every plain conv weight into the
# static kernel W0 and zeroes P and the Λ head, so each DCD layer starts as the plain conv (docs/dcd.md). The
# authors' ImageNet DCD ResNet-50 uses the release's per-layer names, which the layer converts on loading. Without
# network access pass a local file:
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/checkpoint.pth
# zero_init_residual: P starts at 0 also before a checkpoint loads (a plain checkpoint zeroes it anyway): stage 1 is
# frozen in eval mode, where the release's random P gives a residual that grows quadratically with its input.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdynconv'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        type='DynamicConvResNet',
        block_conv_cfg=dict(type='DCD', fc_squeeze=16, pool_size=1, zero_init_residual=True),
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')))
