# Comparison segmenter with SAPA-B in the FPN top-down path, each step guided by the finer level's lateral
# (k_up 5, embedding dim 32 as the release's experiment logs).
_base_ = './semfpn_tiny-r50_shapes64.py'
model = dict(neck=dict(type='UpsamplerFPN',
                       upsample_cfg=dict(type='sapa', up_kernel=5, embedding_dim=32, query_mode='encoder')))
