# Faster R-CNN R50-FPN 1x COCO (mmdet's SGD protocol, the protocol of the ODConv paper's COCO comparison) with
# CondConv (8 experts) in conv1/conv2/conv3 of every bottleneck (DynamicConvResNet; stem and shortcuts plain).
# Pretrained weights: an ordinary ResNet-50 checkpoint; every plain conv weight W initialises all eight experts with
# W / 4 (4 = E/2, the routing weights' sum at zero logits), so each layer starts as the plain conv (docs/baselines.md).
# Without network access pass a local file:  --cfg-options model.backbone.init_cfg.checkpoint=/path/to/resnet50.pth
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdynconv'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        type='DynamicConvResNet',
        block_conv_cfg=dict(type='CondConv', num_experts=8),
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')))
