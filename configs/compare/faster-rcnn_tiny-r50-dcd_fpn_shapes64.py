# Comparison detector with DCD (latent dim ⌊√Ci⌋, fc_squeeze 16) in conv1/conv2/conv3 of every bottleneck (stem and
# shortcuts plain; configs/dcd/faster-rcnn_r50-dcd_fpn_1x_coco.py at demo size); from the plain pretrained backbone,
# whose conv weights load into DCD's static kernels (each layer starts as the plain conv).
_base_ = './faster-rcnn_tiny-r50_fpn_shapes64.py'
model = dict(backbone=dict(type='DynamicConvResNet', block_conv_cfg=dict(type='DCD', fc_squeeze=16, pool_size=1)))
