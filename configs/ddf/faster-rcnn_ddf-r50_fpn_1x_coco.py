# Faster R-CNN with a DDF-ResNet-50 backbone: conv2 (the 3x3) of all 16 bottlenecks is a DDF layer ('mul'),
# stride-2 blocks included; stem, 1x1 convs and shortcuts stay plain (the published DDF-ResNet placement).
# ImageNet DDF-ResNet-50 weights cannot be downloaded by this project: pass yours with
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/ddf_resnet50.pth
# The authors' released checkpoints (published: 79.1 % ImageNet top-1 for 'mul') load as they are. A plain ResNet-50
# checkpoint also loads, leaving the DDF layers at their initialisation (mmengine lists their keys as missing).
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdynconv'], allow_failed_imports=False)
ddf_resnet_checkpoint = 'checkpoints/ddf_resnet50_mul_imagenet.pth'
model = dict(
    backbone=dict(
        dcn=dict(type='DDF', kernel_combine='mul', fallback_on_stride=False),
        stage_with_dcn=(True, True, True, True),
        init_cfg=dict(type='Pretrained', checkpoint=ddf_resnet_checkpoint)))
