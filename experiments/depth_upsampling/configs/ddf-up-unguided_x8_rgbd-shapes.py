# Baseline: the ×8 network with unguided DDF-Up (no RGB).
_base_ = './ddf-up-guided_x8_rgbd-shapes.py'
model = dict(guidance_channels=None)
