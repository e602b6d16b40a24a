# KernelWarehouse 4x (four times the warehouse cells the convs need), otherwise configs/kernel_warehouse/
# mask-rcnn_r50-kw1x_fpn_1x_coco.py, as the release's mask_rcnn_kw4x_resnet50 (same one difference: a plain
# ResNet-50 checkpoint, which starts each conv exactly at the plain conv for every ratio >= 1).
_base_ = './mask-rcnn_r50-kw1x_fpn_1x_coco.py'
model = dict(backbone=dict(kw_cfg=dict(cell_num_ratio=4)))
