# Semantic FPN R50 on ADE20K 512x512 (160k) with DDF-Up in the FPN's top-down pathway.
_base_ = 'mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py'
custom_imports = dict(imports=['mmdynconv'], allow_failed_imports=False)
model = dict(neck=dict(type='UpsamplerFPN', upsample_cfg=dict(type='ddf_up', kernel_size=3)))
