# Comparison detector with ODConv (4 kernels) in conv1/conv2/conv3 of every bottleneck (stem and shortcuts plain;
# configs/baselines/faster-rcnn_tiny-r50-odconv_fpn_shapes.py), temperature 30 -> 1 over the first epoch; from the
# plain pretrained backbone.
_base_ = './faster-rcnn_tiny-r50_fpn_shapes64.py'
model = dict(backbone=dict(type='DynamicConvResNet',
                           block_conv_cfg=dict(type='ODConv', kernel_num=4, reduction=0.0625, min_channels=16)))
custom_hooks = [dict(type='TemperatureAnnealHook', start=30.0, end=1.0, anneal=1, by_epoch=True)]
