# Demo: the baseline demo detector with ODConv (4x: four kernels; spatial, input-channel, output-channel and kernel
# attentions; reduction 1/16, minimum width 16) in conv1/conv2/conv3 of every bottleneck (DynamicConvResNet: stem and
# shortcut projections plain, as the authors' OD-ResNet); same data and schedule. Trained from scratch, so the
# temperature is annealed 30 -> 1 over the first epoch as in the authors' ImageNet recipe.
_base_ = '../demo/faster-rcnn_tiny-r50_fpn_shapes.py'
model = dict(backbone=dict(type='DynamicConvResNet',
                           block_conv_cfg=dict(type='ODConv', kernel_num=4, reduction=0.0625, min_channels=16)))
custom_hooks = [dict(type='TemperatureAnnealHook', start=30.0, end=1.0, anneal=1, by_epoch=True)]
