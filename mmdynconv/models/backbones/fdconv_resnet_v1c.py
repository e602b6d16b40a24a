"""mmseg ``ResNetV1c`` with a dynamic conv in every bottleneck conv, registered in the root ``MODELS``."""
from mmengine.registry import MODELS
from mmseg.models.backbones import ResNetV1c

from ...layers.kernel_spatial_modulation import ksm_norms_train
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
        ksm_norm_eval: False (default) keeps the KSM BatchNorms in training mode whenever the backbone trains, also
            under ``norm_eval=True`` and in frozen stages; True lets ``norm_eval`` / frozen stages freeze them as the
            authors' release does (with a converted plain checkpoint they then never normalise; see
            docs/fdconv.md).
        **kwargs: mmseg ``ResNetV1c`` arguments; a ``pretrained``/``init_cfg`` ResNetV1c checkpoint is converted to
            FDConv spectra when loaded.
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
