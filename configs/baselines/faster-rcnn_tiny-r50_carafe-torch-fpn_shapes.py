# Demo: the baseline demo detector with CARAFE (pure PyTorch, runs on CPU; mmcv's CARAFEPack arguments and defaults:
# k_up 5, k_encoder 3, 64 compressed channels) in the FPN's top-down pathway; same data and schedule.
_base_ = '../demo/faster-rcnn_tiny-r50_fpn_shapes.py'
model = dict(neck=dict(type='UpsamplerFPN', upsample_cfg=dict(type='carafe_torch', up_kernel=5, up_group=1,
                                                              encoder_kernel=3, compressed_channels=64)))
