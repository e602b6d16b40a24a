"""A registered conv type in conv1, conv2 and conv3 of every ResNet bottleneck (the placement FDConv's, ODConv's and
CondConv's papers use) or conv1 and conv2 of every BasicBlock (ResNet-18/34: ODConv's and DY-Conv's ResNet-18
placement), shared by the mmdet and mmseg backbone variants."""
from mmcv.cnn import build_conv_layer
from torch import nn

from ...layers.kernel_spatial_modulation import ksm_norms_train

__all__ = ['block_conv_names', 'BlockConvPlacementMixin', 'FDConvPlacementMixin', 'fdconv_cfg_of']

BLOCK_CONVS = ('conv1', 'conv2', 'conv3')
BASIC_BLOCK_CONVS = ('conv1', 'conv2')


def block_conv_names(block):
    """The convs of a residual block the placement replaces: conv1-3 of a Bottleneck, conv1-2 of a BasicBlock."""
    return BLOCK_CONVS if hasattr(block, 'conv3') else BASIC_BLOCK_CONVS


class BlockConvPlacementMixin:
    """Mixin for an OpenMMLab ``ResNet`` subclass: ``block_conv_cfg`` builds conv1, conv2 and conv3 of every
    bottleneck (conv1 and conv2 of every BasicBlock, depths 18/34) of the enabled stages (through
    ``build_conv_layer``, with the plain conv's arguments); the stem and the shortcut projections stay plain.

    In a frozen stage (``frozen_stages``) everything stays frozen except what a layer lists in its
    ``modulation_parameters()`` (FDConv: KSM and FBM, the published recipe); frozen stages are kept in eval mode by
    the parent ``train()``.
    """

    def place_block_convs(self, block_conv_cfg, stage_flags, arg_names=('block_conv_cfg', 'stage_with_block_conv')):
        cfg_name, flags_name = arg_names
        if not isinstance(block_conv_cfg, dict) or not isinstance(block_conv_cfg.get('type'), str):
            raise ValueError(f'{cfg_name} must be a conv config dict with a type, e.g. dict(type=\'ODConv\'), got '
                             f'{block_conv_cfg!r}')
        if len(stage_flags) != len(self.res_layers):
            raise ValueError(f'{flags_name} must have one flag per stage ({len(self.res_layers)}), got '
                             f'{stage_flags!r}')
        for stage, (layer_name, enabled) in enumerate(zip(self.res_layers, stage_flags)):
            if not enabled:
                continue
            for index, block in enumerate(getattr(self, layer_name)):
                for name in block_conv_names(block):
                    conv = getattr(block, name, None)
                    if type(conv) is not nn.Conv2d:
                        raise ValueError(f'{layer_name}.{index}.{name} is {type(conv).__name__}, not a plain '
                                         f'nn.Conv2d: {block_conv_cfg["type"]} replaces plain block convs only (no '
                                         f'dcn or plugin conv in stage {stage + 1})')
                    setattr(block, name, build_conv_layer(
                        dict(block_conv_cfg), conv.in_channels, conv.out_channels, conv.kernel_size,
                        stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                        bias=conv.bias is not None))
        self._freeze_stages()

    def _freeze_stages(self):
        super()._freeze_stages()
        for i in range(1, self.frozen_stages + 1):
            for module in getattr(self, f'layer{i}').modules():
                if hasattr(module, 'modulation_parameters'):
                    for param in module.modulation_parameters():
                        param.requires_grad = True


class FDConvPlacementMixin(BlockConvPlacementMixin):
    """:class:`BlockConvPlacementMixin` with FDConv (the published placement) and FDConv's BatchNorm rule.

    Args:
        fdconv_cfg: FDConv options, e.g. ``dict(type='FDConv', kernel_num=64)``.
        stage_with_fdconv: one flag per stage.
        ksm_norm_eval: False (default) keeps the KSM BatchNorms in training mode whenever the backbone trains, also
            under ``norm_eval=True`` and in frozen stages; True lets ``norm_eval`` / frozen stages freeze them as the
            authors' release does (with a converted plain checkpoint they then never normalise; see
            docs/fdconv.md).
        **kwargs: the parent ResNet's arguments.
    """

    def __init__(self, fdconv_cfg=dict(type='FDConv'), stage_with_fdconv=(True, True, True, True), ksm_norm_eval=False,
                 **kwargs):
        self.ksm_norm_eval = ksm_norm_eval
        super().__init__(**kwargs)
        self.place_block_convs(fdconv_cfg_of(fdconv_cfg), stage_with_fdconv, ('fdconv_cfg', 'stage_with_fdconv'))

    def train(self, mode=True):
        super().train(mode)
        if mode and not self.ksm_norm_eval:
            ksm_norms_train(self)
        return self


def fdconv_cfg_of(fdconv_cfg):
    """The FDConv backbones' ``fdconv_cfg`` as a block conv config (its type must be FDConv)."""
    if not isinstance(fdconv_cfg, dict) or fdconv_cfg.get('type', 'FDConv') != 'FDConv':
        raise ValueError(f"fdconv_cfg must be a dict with type='FDConv', got {fdconv_cfg!r}")
    return dict(fdconv_cfg, type='FDConv')
