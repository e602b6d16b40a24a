# Comparison detector with DDF in conv2 of every bottleneck (as configs/demo/faster-rcnn_tiny-ddf-r50_fpn_shapes.py).
_base_ = './faster-rcnn_tiny-r50_fpn_shapes64.py'
model = dict(backbone=dict(dcn=dict(type='DDF', fallback_on_stride=False), stage_with_dcn=(True, True, True, True)))
