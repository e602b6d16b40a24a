# Demo: the baseline demo segmenter with DySample ('lp' style, static scope, 4 groups) in the FPN's top-down
# pathway; same data and schedule.
_base_ = '../demo/semfpn_tiny-r50_shapes.py'
model = dict(neck=dict(type='UpsamplerFPN', upsample_cfg=dict(type='dysample', groups=4)))
