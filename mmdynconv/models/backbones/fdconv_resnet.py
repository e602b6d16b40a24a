"""mmdet ``ResNet`` with a dynamic conv in every bottleneck conv, registered in the root ``MODELS``."""
from mmdet.models.backbones import ResNet
from mmengine.registry import MODELS

from ...layers.kernel_spatial_modulation import ksm_norms_train
from .block_conv_placement import BlockConvPlacementMixin, fdconv_cfg_of


@MODELS.register_module()
class DynamicConvResNet(BlockConvPlacementMixin, ResNet):
    """mmdet's ``ResNet`` (Bottleneck depths 50/101/152) with ``block_conv_cfg`` (any registered conv type, e.g.
    ``dict(type='ODConv', kernel_num=4)``) in conv1, conv2 and conv3 of every bottleneck of the flagged stages.

    Args:
        block_conv_cfg: the conv config. stage_with_block_conv: one flag per stage.
        **kwargs: mmdet ``ResNet`` arguments. An ordinary ResNet checkpoint loads through ``init_cfg`` when the layer
            converts plain conv weights (FDConv, CondConv, DYConv, ODConv do).
    """

    def __init__(self, block_conv_cfg, stage_with_block_conv=(True, True, True, True), **kwargs):
        super().__init__(**kwargs)
        self.place_block_convs(block_conv_cfg, stage_with_block_conv)


@MODELS.register_module()
class FDConvResNet(BlockConvPlacementMixin, ResNet):
    """mmdet's ``ResNet`` with FDConv's published placement (:class:`DynamicConvResNet` with FDConv).

    Args:
        fdconv_cfg: FDConv options, e.g. ``dict(type='FDConv', kernel_num=64)``.
        stage_with_fdconv: one flag per stage.
        ksm_norm_eval: False (default) keeps the KSM BatchNorms in training mode whenever the backbone trains, also
            under ``norm_eval=True`` and in frozen stages; True lets ``norm_eval`` / frozen stages freeze them as the
            authors' release does (with a converted plain checkpoint they then never normalise; see
            docs/fdconv.md).
        **kwargs: mmdet ``ResNet`` arguments. ``init_cfg=dict(type='Pretrained', checkpoint=...)`` accepts an
            ordinary ResNet checkpoint (conv weights are converted to FDConv spectra when loaded) or one of the
            authors' FDConv checkpoints (converted likewise).
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

