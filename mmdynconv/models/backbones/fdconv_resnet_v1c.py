"""mmseg ``ResNetV1c`` with a dynamic conv in every bottleneck conv, registered in the root ``MODELS``."""
from mmengine.registry import MODELS
from mmseg.models.backbones import ResNetV1c

from .block_conv_placement import BlockConvPlacementMixin, fdconv_cfg_of


@MODELS.register_module()
class DynamicConvResNetV1c(BlockConvPlacementMixin, ResNetV1c):
    """mmseg's ``ResNetV1c`` (deep stem, Bottleneck depths 50/101/152) with ``block_conv_cfg`` in conv1, conv2 and
    conv3 of every bottleneck of the flagged stages; arguments as :class:`~.fdconv_resnet.DynamicConvResNet`."""

    def __init__(self, block_conv_cfg, stage_with_block_conv=(True, True, True, True), **kwargs):
        super().__init__(**kwargs)
        self.place_block_convs(block_conv_cfg, stage_with_block_conv)


@MODELS.register_module()
class FDConvResNetV1c(BlockConvPlacementMixin, ResNetV1c):
    """mmseg's ``ResNetV1c`` with FDConv's published placement.

    Args:
        fdconv_cfg: FDConv options, e.g. ``dict(type='FDConv', kernel_num=64)``.
        stage_with_fdconv: one flag per stage.
        **kwargs: mmseg ``ResNetV1c`` arguments; a ``pretrained``/``init_cfg`` ResNetV1c checkpoint is converted to
            FDConv spectra when loaded.
    """

    def __init__(self, fdconv_cfg=dict(type='FDConv'), stage_with_fdconv=(True, True, True, True), **kwargs):
        super().__init__(**kwargs)
        self.place_block_convs(fdconv_cfg_of(fdconv_cfg), stage_with_fdconv, ('fdconv_cfg', 'stage_with_fdconv'))
