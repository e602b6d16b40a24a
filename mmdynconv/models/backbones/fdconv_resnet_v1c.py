"""mmseg ``ResNetV1c`` with a dynamic conv in every bottleneck conv, registered in the root ``MODELS``."""
from mmengine.registry import MODELS
from mmseg.models.backbones import ResNetV1c

from .block_conv_placement import BlockConvPlacementMixin, FDConvPlacementMixin

__all__ = ['DynamicConvResNetV1c', 'FDConvResNetV1c']


@MODELS.register_module()
class DynamicConvResNetV1c(BlockConvPlacementMixin, ResNetV1c):
    """mmseg's ``ResNetV1c`` (deep stem, any depth) with ``block_conv_cfg`` in conv1, conv2 and conv3 of every
    bottleneck (conv1 and conv2 of every BasicBlock) of the flagged stages; arguments as
    :class:`~.fdconv_resnet.DynamicConvResNet`."""

    def __init__(self, block_conv_cfg, stage_with_block_conv=(True, True, True, True), **kwargs):
        super().__init__(**kwargs)
        self.place_block_convs(block_conv_cfg, stage_with_block_conv)


@MODELS.register_module()
class FDConvResNetV1c(FDConvPlacementMixin, ResNetV1c):
    """mmseg's ``ResNetV1c`` with FDConv's published placement.

    Arguments: those of :class:`~.block_conv_placement.FDConvPlacementMixin`, then mmseg ``ResNetV1c``'s. A
    ``pretrained`` / ``init_cfg`` ResNetV1c checkpoint is converted to FDConv spectra when loaded.
    """
