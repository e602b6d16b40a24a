# Demo: the baseline demo segmenter with CARAFE (pure PyTorch; mmcv's CARAFEPack defaults) in the FPN's top-down
# pathway; same data and schedule as configs/demo/semfpn_tiny-r50_shapes.py.
_base_ = '../demo/semfpn_tiny-r50_shapes.py'
model = dict(neck=dict(type='UpsamplerFPN', upsample_cfg=dict(type='carafe_torch', up_kernel=5, up_group=1,
                                                              encoder_kernel=3, compressed_channels=64)))
