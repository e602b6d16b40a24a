# Comparison detector with an FDConv-ResNet backbone (as configs/demo/faster-rcnn_tiny-r50-fdconv_fpn_shapes.py: all
# 48 bottleneck convs dynamic at base width 16, FBM in the 3x3 ones, release-exact defaults).
_base_ = './faster-rcnn_tiny-r50_fpn_shapes64.py'
model = dict(
    # ksm_norm_eval=True: the release's handling of the KSM BatchNorms, with which the comparison's FDConv rows were
    # measured (the backbone's default now keeps them training: the 'KSM-BN-train' row)
    backbone=dict(type='FDConvResNet', ksm_norm_eval=True,
                  fdconv_cfg=dict(type='FDConv', kernel_num=64, dynamic_min_channels=4)))
