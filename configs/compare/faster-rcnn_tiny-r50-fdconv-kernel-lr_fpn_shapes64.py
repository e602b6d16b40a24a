# DIAGNOSTIC, not one of the compared recipes: the comparison FDConv detector with the spectrum's learning rate
# multiplied by 3.05 = 1 / (mean Adam step gain of the spectrum parameterisation over this backbone's 48 FDConv
# layers, measured by tools/probe_fdconv_training.py) and its decay_mult divided by the same factor, so that one AdamW
# step moves the FDConv kernel as far as it moves a plain conv's kernel, with the same weight decay per step.
_base_ = './faster-rcnn_tiny-r50-fdconv_fpn_shapes64.py'
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'spectrum': dict(lr_mult=3.05, decay_mult=1 / 3.05)}))
