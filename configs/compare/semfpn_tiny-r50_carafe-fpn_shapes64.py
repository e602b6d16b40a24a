# Comparison segmenter with CARAFE ('carafe_torch') in the FPN top-down path.
_base_ = './semfpn_tiny-r50_shapes64.py'
model = dict(neck=dict(type='UpsamplerFPN', upsample_cfg=dict(type='carafe_torch', up_kernel=5, up_group=1,
                                                              encoder_kernel=3, compressed_channels=64)))
