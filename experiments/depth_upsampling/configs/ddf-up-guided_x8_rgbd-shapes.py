# Guided depth upsampling ×8 with DDF-Up: the ×4 config with scale 8 (64×64 training crops → 8×8 inputs).
_base_ = './ddf-up-guided_x4_rgbd-shapes.py'
scale = 8
model = dict(scale_factor=scale)
train_dataloader = dict(dataset=dict(scale_factor=scale))
val_dataloader = dict(dataset=dict(scale_factor=scale))
test_dataloader = val_dataloader
