# Baseline: the same network with unguided DDF-Up (its spatial filters come from the depth features; no RGB).
_base_ = './ddf-up-guided_x4_rgbd-shapes.py'
model = dict(guidance_channels=None)
