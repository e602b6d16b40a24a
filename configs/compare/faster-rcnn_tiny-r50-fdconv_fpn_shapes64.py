# Comparison detector with an FDConv-ResNet backbone (as configs/demo/faster-rcnn_tiny-r50-fdconv_fpn_shapes.py: all
# 48 bottleneck convs dynamic at base width 16, FBM in the 3x3 ones, release-exact defaults).
_base_ = './faster-rcnn_tiny-r50_fpn_shapes64.py'
model = dict(
    backbone=dict(type='FDConvResNet', fdconv_cfg=dict(type='FDConv', kernel_num=64, dynamic_min_channels=4)))
