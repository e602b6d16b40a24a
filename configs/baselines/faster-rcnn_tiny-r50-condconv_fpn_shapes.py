# Demo: the baseline demo detector with CondConv (8 experts, sigmoid routing) as every conv of the ResNet-50 built
# through conv_cfg (bottleneck conv1/conv2/conv3, and also the stem and the shortcut projections); same data and
# schedule as configs/demo/faster-rcnn_tiny-r50_fpn_shapes.py.
_base_ = '../demo/faster-rcnn_tiny-r50_fpn_shapes.py'
model = dict(backbone=dict(conv_cfg=dict(type='CondConv', num_experts=8)))
