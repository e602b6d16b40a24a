# Comparison detector with DySample in the FPN top-down path (configs/baselines/faster-rcnn_tiny-r50_dysample-fpn_
# shapes.py).
_base_ = './faster-rcnn_tiny-r50_fpn_shapes64.py'
model = dict(neck=dict(type='UpsamplerFPN', upsample_cfg=dict(type='dysample', groups=4)))
