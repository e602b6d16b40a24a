# UPerNet R50, ADE20K 512x512, 160k iterations, with the head's top-down bilinear x2 resizes replaced by SAPA-B (k_up 5,
# embedding dim 32), each guided by the finer level's lateral (UpsamplerUPerHead, docs/fade.md). SAPA publishes no
# UPerNet number; mmseg's published UPerNet R50 160k: 42.05 mIoU.
_base_ = 'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['mmdynconv'], allow_failed_imports=False)
model = dict(decode_head=dict(type='UpsamplerUPerHead',
                              upsample_cfg=dict(type='sapa', up_kernel=5, embedding_dim=32, query_mode='encoder')))
