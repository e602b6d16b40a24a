# Demo: the baseline demo detector with CondConv (8 experts, sigmoid routing) in conv1/conv2/conv3 of every
# bottleneck (DynamicConvResNet: the stem and the shortcut projections stay plain, the placement of the FDConv demo);
# same data and schedule as configs/demo/faster-rcnn_tiny-r50_fpn_shapes.py.
_base_ = '../demo/faster-rcnn_tiny-r50_fpn_shapes.py'
model = dict(backbone=dict(type='DynamicConvResNet', block_conv_cfg=dict(type='CondConv', num_experts=8)))
