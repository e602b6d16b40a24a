# Pretraining of the DDF-ResNet backbone (its conv2 filters cannot come from a plain conv): the same task and budget
# as faster-rcnn_tiny-r50_fpn_pretrain-shapes64.py.
_base_ = './faster-rcnn_tiny-r50_fpn_pretrain-shapes64.py'
model = dict(backbone=dict(dcn=dict(type='DDF', fallback_on_stride=False), stage_with_dcn=(True, True, True, True)))
