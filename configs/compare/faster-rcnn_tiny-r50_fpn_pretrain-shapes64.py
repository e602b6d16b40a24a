# Pretraining task of the comparison (tools/compare_layers.py): the comparison detector trained on a different
# generated task (hexagon / cross / ellipse / arrow in saturated colours, other scales, another seed; see
# experiments/demo_comparison/protocol.py). Only its backbone weights are kept, as an ImageNet checkpoint would be.
_base_ = './faster-rcnn_tiny-r50_fpn_shapes64.py'
metainfo = dict(classes=('hexagon', 'cross', 'ellipse', 'arrow'),
                palette=[(220, 20, 60), (0, 130, 230), (0, 180, 80), (250, 170, 30)])
train_dataloader = dict(dataset=dict(metainfo=metainfo))
val_dataloader = dict(dataset=dict(metainfo=metainfo))
test_dataloader = val_dataloader
