# Comparison detector with CondConv (8 experts) in conv1/conv2/conv3 of every bottleneck (stem and shortcuts
# plain; configs/baselines/faster-rcnn_tiny-r50-condconv_fpn_shapes.py); fine-tuned from the plain pretrained
# backbone (each expert starts at the plain kernel).
_base_ = './faster-rcnn_tiny-r50_fpn_shapes64.py'
model = dict(backbone=dict(type='DynamicConvResNet', block_conv_cfg=dict(type='CondConv', num_experts=8)))
