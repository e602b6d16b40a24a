# Comparison segmenter with an FDConv-ResNet backbone (mmdet layout; all 48 bottleneck convs dynamic at width 16).
_base_ = './semfpn_tiny-r50_shapes64.py'
model = dict(
    # ksm_norm_eval=True: the release's handling of the KSM BatchNorms, with which the comparison's FDConv rows were
    # measured (the backbone's default now keeps them training: the 'KSM-BN-train' row)
    backbone=dict(type='FDConvResNet', ksm_norm_eval=True,
                  fdconv_cfg=dict(type='FDConv', kernel_num=64, dynamic_min_channels=4)))
