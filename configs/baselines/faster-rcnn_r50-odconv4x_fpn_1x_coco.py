# Faster R-CNN R50-FPN 1x COCO (mmdet's SGD protocol, as the ODConv authors' detection config) with ODConv (4x) in
# conv1/conv2/conv3 of every bottleneck (DynamicConvResNet; the stem and the four shortcut projections stay plain, as
# in the authors' OD-ResNet). Temperature 1 (the authors' detection setting).
# Published (ODConv repository, object_detection/README.md): 39.4 box AP, 108.91 M params, against 37.4 for their
# plain R50 baseline.
# Pretrained weights: the authors fine-tune their ImageNet-trained OD-ResNet-50 (4x), whose keys (layerX.Y.convZ.weight
# (4, Co, Ci, k, k), ...attention.*) match this backbone's. An ordinary ResNet-50 checkpoint (the default below) also
# loads: every plain conv weight W initialises all four kernels with W / g (g = 1/8 for 3x3, 1/4 for 1x1: the
# sigmoid attentions' product at zero logits), so each layer starts as the plain conv (docs/baselines.md). Without
# network access pass a local file:
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/checkpoint.pth
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdynconv'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        type='DynamicConvResNet',
        block_conv_cfg=dict(type='ODConv', kernel_num=4, reduction=0.0625, min_channels=16),
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')))
