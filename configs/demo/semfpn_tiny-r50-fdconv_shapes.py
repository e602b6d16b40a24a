# Demo: the baseline demo semantic FPN with an FDConv-ResNet-V1c backbone (conv1/conv2/conv3 of every bottleneck
# FDConv, FBM in the 3x3 ones); same data and schedule. At base width 16 the published fallback rule
# (min(Ci, Co) > 16) would leave stage 1 plain; the threshold is scaled with the width (16 / 4) so that all 48 convs
# are dynamic.
_base_ = './semfpn_tiny-r50_shapes.py'
model = dict(
    backbone=dict(type='FDConvResNetV1c', fdconv_cfg=dict(type='FDConv', kernel_num=64, dynamic_min_channels=4)))
