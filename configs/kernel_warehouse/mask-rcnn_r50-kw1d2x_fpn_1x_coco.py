# KernelWarehouse 1/2x (half the cells, of half the channels, and the non-local attention basis 1/16: the release's
# ImageNet ResNet-50 1/2x, 17.64 M parameters with the classifier); otherwise configs/kernel_warehouse/
# mask-rcnn_r50-kw1x_fpn_1x_coco.py. The release has no detection config at this ratio. A plain ResNet-50 checkpoint
# does not start it at the plain network: only the cells with a warehouse cell of their own load their block, the
# others start at zero (docs/kernel_warehouse.md).
_base_ = './mask-rcnn_r50-kw1x_fpn_1x_coco.py'
model = dict(backbone=dict(kw_cfg=dict(cell_num_ratio=0.5, cell_in_ratio=0.5, cell_out_ratio=0.5,
                                       nonlocal_basis_ratio=0.0625)))
