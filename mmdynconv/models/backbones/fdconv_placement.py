"""FDConv's published placement in ResNet bottlenecks, shared by the mmdet and mmseg backbone variants."""
from mmcv.cnn import build_conv_layer
from torch import nn

from ...layers.fdconv import FDConv

BLOCK_CONVS = ('conv1', 'conv2', 'conv3')


class FDConvPlacementMixin:
    """Mixin for an OpenMMLab ``ResNet`` subclass: FDConv in conv1, conv2 and conv3 of every bottleneck.

    The stem and the shortcut projections stay plain; FBM goes to the 3×3 conv2 only (FDConv's default). In a frozen
    stage (``frozen_stages``) the kernels (``spectrum``) and BatchNorms stay frozen, but the KSM and FBM parameters
    of its FDConv layers remain trainable (the published recipe, which freezes stage 1). Frozen stages are kept in
    eval mode by the parent ``train()``, KSM BatchNorms included.
    """

    def place_fdconv(self, fdconv_cfg, stage_with_fdconv):
        if not isinstance(fdconv_cfg, dict) or fdconv_cfg.get('type', 'FDConv') != 'FDConv':
            raise ValueError(f"fdconv_cfg must be a dict with type='FDConv', got {fdconv_cfg!r}")
        if len(stage_with_fdconv) != len(self.res_layers):
            raise ValueError(f'stage_with_fdconv must have one flag per stage ({len(self.res_layers)}), got '
                             f'{stage_with_fdconv!r}')
        cfg = dict(fdconv_cfg, type='FDConv')
        for stage, (layer_name, enabled) in enumerate(zip(self.res_layers, stage_with_fdconv)):
            if not enabled:
                continue
            for index, block in enumerate(getattr(self, layer_name)):
                for name in BLOCK_CONVS:
                    conv = getattr(block, name, None)
                    if type(conv) is not nn.Conv2d:
                        raise ValueError(f'{layer_name}.{index}.{name} is {type(conv).__name__}, not a plain '
                                         f'nn.Conv2d: FDConv replaces bottleneck convs only (no dcn or BasicBlock '
                                         f'in stage {stage + 1})')
                    setattr(block, name, build_conv_layer(
                        cfg, conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                        padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None))
        self._freeze_stages()

    def _freeze_stages(self):
        super()._freeze_stages()
        for i in range(1, self.frozen_stages + 1):
            for module in getattr(self, f'layer{i}').modules():
                if isinstance(module, FDConv):
                    for param in module.modulation_parameters():
                        param.requires_grad = True
