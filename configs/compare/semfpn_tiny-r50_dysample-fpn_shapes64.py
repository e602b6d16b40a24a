# Comparison segmenter with DySample in the FPN top-down path.
_base_ = './semfpn_tiny-r50_shapes64.py'
model = dict(neck=dict(type='UpsamplerFPN', upsample_cfg=dict(type='dysample', groups=4)))
