# Comparison detector with CARAFE (pure-PyTorch 'carafe_torch') in the FPN top-down path
# (configs/baselines/faster-rcnn_tiny-r50_carafe-torch-fpn_shapes.py).
_base_ = './faster-rcnn_tiny-r50_fpn_shapes64.py'
model = dict(neck=dict(type='UpsamplerFPN', upsample_cfg=dict(type='carafe_torch', up_kernel=5, up_group=1,
                                                              encoder_kernel=3, compressed_channels=64)))
