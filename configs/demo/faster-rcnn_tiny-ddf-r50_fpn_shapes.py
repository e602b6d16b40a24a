# Demo: the baseline demo detector with a DDF-ResNet backbone (conv2 of every bottleneck is DDF 'mul');
# same data and schedule.
_base_ = './faster-rcnn_tiny-r50_fpn_shapes.py'
model = dict(backbone=dict(dcn=dict(type='DDF', fallback_on_stride=False), stage_with_dcn=(True, True, True, True)))
