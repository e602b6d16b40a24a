# Comparison segmenter with DDF-Up in the FPN top-down path (as configs/demo/semfpn_tiny-r50_ddf-up-fpn_shapes.py).
_base_ = './semfpn_tiny-r50_shapes64.py'
model = dict(neck=dict(type='UpsamplerFPN', upsample_cfg=dict(type='ddf_up', kernel_size=3)))
