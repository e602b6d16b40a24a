# Comparison segmenter with DDF in conv2 of every bottleneck.
_base_ = './semfpn_tiny-r50_shapes64.py'
model = dict(backbone=dict(dcn=dict(type='DDF', fallback_on_stride=False), stage_with_dcn=(True, True, True, True)))
