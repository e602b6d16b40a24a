# Comparison detector with DDF-Up in the FPN top-down path (as configs/demo/faster-rcnn_tiny-r50_ddf-up-fpn_shapes.py).
_base_ = './faster-rcnn_tiny-r50_fpn_shapes64.py'
model = dict(neck=dict(type='UpsamplerFPN', upsample_cfg=dict(type='ddf_up', kernel_size=3)))
