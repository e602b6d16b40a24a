# DIAGNOSTIC / proposed fix, not the published recipe: the comparison FDConv detector with every KSM BatchNorm kept in
# training mode while fine-tuning (KSMNormTrainHook). Under mmdet's fine-tuning defaults (norm_eval=True, stage 1
# frozen) those BatchNorms, which have no pretrained statistics, otherwise stay in eval mode with mean 0 / variance 1
# and do not normalise the KSM trunk (see docs/comparison.md).
_base_ = './faster-rcnn_tiny-r50-fdconv_fpn_shapes64.py'
custom_imports = dict(imports=['mmdynconv', 'mmdynconv.comparison.metrics_hook'], allow_failed_imports=False)
custom_hooks = [dict(type='KSMNormTrainHook')]
