# Comparison segmenter with an FDConv-ResNet backbone (mmdet layout; all 48 bottleneck convs dynamic at width 16).
_base_ = './semfpn_tiny-r50_shapes64.py'
model = dict(
    backbone=dict(type='FDConvResNet', fdconv_cfg=dict(type='FDConv', kernel_num=64, dynamic_min_channels=4)))
