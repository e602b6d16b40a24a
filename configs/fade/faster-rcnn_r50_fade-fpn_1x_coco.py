# Faster R-CNN R50-FPN 1x COCO with the FPN's top-down nearest x2 upsampling replaced by FADE (k_up 5, gated); each
# top-down step is guided by the lateral of the finer level (UpsamplerFPN's guidance protocol, docs/fade.md).
# mmdet reference (published by mmdet): nearest 37.4 box AP, CARAFE 38.6. FADE's own published numbers are for
# SegFormer-B1 on ADE20K (configs/fade/metafile.yml), not for this detector.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdynconv'], allow_failed_imports=False)
model = dict(neck=dict(type='UpsamplerFPN', upsample_cfg=dict(type='fade', up_kernel=5, gating=True)))
