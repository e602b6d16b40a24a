# SegFormer MiT-B1, ADE20K 512x512, 160k iterations, with the decode head's bilinear resizes to the 1/4 level replaced
# by chains of x2 SAPA-B upsamplers (k_up 5, embedding dim 32 as the release's logs; 6 in all), each guided by the
# projected feature of the level it upsamples to: the setting of SAPA's published segmentation results (docs/sapa.md).
# Published (SAPA release README, SegFormer-B1 ADE20K): bilinear 41.68 mIoU, SAPA-B 43.20.
_base_ = 'mmseg::segformer/segformer_mit-b1_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['mmdynconv'], allow_failed_imports=False)
model = dict(decode_head=dict(type='UpsamplerSegformerHead',
                              upsample_cfg=dict(type='sapa', up_kernel=5, embedding_dim=32, query_mode='encoder')))
