"""mmdet ``ResNet`` with a dynamic conv in every bottleneck conv, registered in the root ``MODELS``."""
from mmdet.models.backbones import ResNet
from mmengine.registry import MODELS

from .block_conv_placement import BlockConvPlacementMixin, FDConvPlacementMixin

__all__ = ['DynamicConvResNet', 'FDConvResNet']


@MODELS.register_module()
class DynamicConvResNet(BlockConvPlacementMixin, ResNet):
    """mmdet's ``ResNet`` (any depth) with ``block_conv_cfg`` (any registered conv type, e.g.
    ``dict(type='ODConv', kernel_num=4)``) in conv1, conv2 and conv3 of every bottleneck (conv1 and conv2 of every
    BasicBlock) of the flagged stages.

    Args:
        block_conv_cfg: the conv config. stage_with_block_conv: one flag per stage.
        **kwargs: mmdet ``ResNet`` arguments. An ordinary ResNet checkpoint loads through ``init_cfg`` when the layer
            converts plain conv weights (FDConv, CondConv, DYConv, ODConv do).
    """

    def __init__(self, block_conv_cfg, stage_with_block_conv=(True, True, True, True), **kwargs):
        super().__init__(**kwargs)
        self.place_block_convs(block_conv_cfg, stage_with_block_conv)


@MODELS.register_module()
class FDConvResNet(FDConvPlacementMixin, ResNet):
    """mmdet's ``ResNet`` with FDConv's published placement (:class:`DynamicConvResNet` with FDConv).

    Arguments: those of :class:`~.block_conv_placement.FDConvPlacementMixin`, then mmdet ``ResNet``'s.
    ``init_cfg=dict(type='Pretrained', checkpoint=...)`` accepts an ordinary ResNet checkpoint (conv weights are
    converted to FDConv spectra when loaded) or one of the authors' FDConv checkpoints (converted likewise).
    """
