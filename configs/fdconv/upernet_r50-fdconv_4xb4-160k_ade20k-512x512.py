# UPerNet R50 on ADE20K 512x512, 160k iterations (mmseg's protocol) with an FDConv-ResNet-50-V1c backbone: conv1,
# conv2 and conv3 of all 16 bottlenecks are FDConv (kernel_num 64), FBM in the 3x3 ones; deep stem and shortcut
# projections stay plain. frozen_stages stays mmseg's -1 (nothing frozen); set model.backbone.frozen_stages=1 for the
# detection recipe (stage 1 frozen except its KSM/FBM parameters).
# Published (Chen et al., CVPR 2025): +3.1 mIoU over the R50 UPerNet baseline (mmseg's baseline: about 42 mIoU).
# Pretrained weights: an ordinary ResNet-50-V1c checkpoint (mmseg's 'open-mmlab://resnet50_v1c' needs a network),
# converted while loading; pass a local file with
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/resnet50_v1c.pth
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['mmdynconv'], allow_failed_imports=False)
pretrained = 'open-mmlab://resnet50_v1c'
model = dict(
    pretrained=None,
    backbone=dict(
        type='FDConvResNetV1c',
        fdconv_cfg=dict(type='FDConv', kernel_num=64),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)))
