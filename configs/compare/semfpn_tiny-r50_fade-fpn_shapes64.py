# Comparison segmenter with FADE in the FPN top-down path, each step guided by the finer level's lateral
# (k_up 5, gated, 64 compressed channels as the release).
_base_ = './semfpn_tiny-r50_shapes64.py'
model = dict(neck=dict(type='UpsamplerFPN', upsample_cfg=dict(type='fade', up_kernel=5, gating=True)))
