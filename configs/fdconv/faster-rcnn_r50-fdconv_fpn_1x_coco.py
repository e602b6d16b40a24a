# Faster R-CNN R50-FPN 1x COCO (mmdet's SGD protocol) with an FDConv-ResNet-50 backbone: conv1, conv2 and conv3 of
# all 16 bottlenecks are FDConv (48 layers, kernel_num 64), FBM in the 16 3x3 ones; stem and shortcut projections
# stay plain; stage 1 (frozen_stages=1, inherited) keeps its KSM/FBM parameters trainable.
# Published (Chen et al., CVPR 2025): 39.4 box AP against 37.2 for the plain R50 baseline, +3.6 M params.
# Pretrained weights: an ordinary ImageNet ResNet-50 checkpoint; FDConv converts its conv weights while loading.
# 'torchvision://resnet50' needs torchvision and a network; otherwise pass a local file (torchvision layout, or
# the output of tools/convert_fdconv_checkpoint.py):
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/resnet50.pth
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdynconv'], allow_failed_imports=False)
pretrained = 'torchvision://resnet50'
model = dict(
    backbone=dict(
        type='FDConvResNet',
        fdconv_cfg=dict(type='FDConv', kernel_num=64),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
