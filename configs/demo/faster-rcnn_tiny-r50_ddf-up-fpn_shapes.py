# Demo: the baseline demo detector with DDF-Up (k=3) in the FPN's top-down pathway; same data and schedule.
_base_ = './faster-rcnn_tiny-r50_fpn_shapes.py'
model = dict(neck=dict(type='UpsamplerFPN', upsample_cfg=dict(type='ddf_up', kernel_size=3)))
