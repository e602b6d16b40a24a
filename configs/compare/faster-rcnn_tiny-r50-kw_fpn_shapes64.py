# Comparison detector with KernelWarehouse (1x, one warehouse per stage, the release's assignment: every bottleneck
# conv but stage 1's first conv1, plus the strided shortcut projections; KWResNet), temperature 1 -> 0 over the first
# epoch; from the plain pretrained backbone, whose conv weights fill the assigned warehouse cells (each conv starts as
# the plain conv at temperature 1).
_base_ = './faster-rcnn_tiny-r50_fpn_shapes64.py'
model = dict(backbone=dict(type='KWResNet', kw_cfg=dict(type='KernelWarehouse', cell_num_ratio=1)))
custom_hooks = [dict(type='TemperatureAnnealHook', start=1.0, end=0.0, anneal=1, by_epoch=True)]
