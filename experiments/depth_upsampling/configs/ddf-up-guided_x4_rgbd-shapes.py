# Guided depth upsampling ×4 with DDF-Up (experiments/depth_upsampling, docs/depth_upsampling.md). Trains on CPU in
# about a minute on the synthetic RGB-D scenes of `python tools/depth_upsampling_demo.py --only-data`
# (data/rgbd_shapes). Needs a clone: its model, dataset and metric are experiment code, not in the installed package
# (run from the repository root: `python tools/train.py experiments/depth_upsampling/configs/<this file>`;
# tools/train.py puts the repository root on sys.path, so the import below resolves).
custom_imports = dict(imports=['experiments.depth_upsampling'], allow_failed_imports=False)
default_scope = 'mmengine'  # the depth model, dataset and metric live in mmengine's root registries

scale = 4
data_root = 'data/rgbd_shapes'
model = dict(type='GuidedDepthUpsampler', scale_factor=scale, channels=16, guidance_channels=16, kernel_size=3)

train_dataloader = dict(
    batch_size=8, num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='RGBDUpsamplingDataset', data_root=data_root, ann_file='train.json', scale_factor=scale,
                 crop_size=64, flip=True))
val_dataloader = dict(
    batch_size=8, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='RGBDUpsamplingDataset', data_root=data_root, ann_file='val.json', scale_factor=scale,
                 test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='DepthRMSE')
test_evaluator = val_evaluator

max_iters = 400
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-3, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.05, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=False, begin=20, end=max_iters),
]
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'))
log_processor = dict(by_epoch=False)
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
