# Demo: the baseline demo detector with DY-Conv (K=4 kernels, softmax attention, reduction 4) in conv1/conv2/conv3 of
# every bottleneck (DynamicConvResNet: stem and shortcut projections plain); same data and schedule. The attention
# temperature is annealed 30 -> 1 over the first epoch (the paper: over the first 10 epochs of its ImageNet schedule)
# and stays at 1.
_base_ = '../demo/faster-rcnn_tiny-r50_fpn_shapes.py'
model = dict(backbone=dict(type='DynamicConvResNet', block_conv_cfg=dict(type='DYConv', num_kernels=4, reduction=4)))
custom_hooks = [dict(type='TemperatureAnnealHook', start=30.0, end=1.0, anneal=1, by_epoch=True)]
