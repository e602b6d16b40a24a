# Comparison detector with DY-Conv (4 kernels) in conv1/conv2/conv3 of every bottleneck (stem and shortcuts plain;
# configs/baselines/faster-rcnn_tiny-r50-dyconv_fpn_shapes.py), temperature 30 -> 1 over the first epoch of the
# training set; from the plain pretrained backbone (every kernel starts at the plain one: the mixed kernel equals
# it).
_base_ = './faster-rcnn_tiny-r50_fpn_shapes64.py'
model = dict(backbone=dict(type='DynamicConvResNet', block_conv_cfg=dict(type='DYConv', num_kernels=4, reduction=4)))
custom_hooks = [dict(type='TemperatureAnnealHook', start=30.0, end=1.0, anneal=1, by_epoch=True)]
