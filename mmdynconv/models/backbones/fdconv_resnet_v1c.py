"""mmseg ``ResNetV1c`` with FDConv in every bottleneck conv, registered in the root ``MODELS``."""
from mmseg.models.backbones import ResNetV1c
from mmengine.registry import MODELS

from .fdconv_placement import FDConvPlacementMixin


@MODELS.register_module()
class FDConvResNetV1c(FDConvPlacementMixin, ResNetV1c):
    """mmseg's ``ResNetV1c`` (deep stem, Bottleneck depths 50/101/152) with FDConv's published placement.

    Args:
        fdconv_cfg: FDConv options, e.g. ``dict(type='FDConv', kernel_num=64)``.
        stage_with_fdconv: one flag per stage.
        **kwargs: mmseg ``ResNetV1c`` arguments; a ``pretrained``/``init_cfg`` ResNetV1c checkpoint is converted to
            FDConv spectra when loaded.
    """

    def __init__(self, fdconv_cfg=dict(type='FDConv'), stage_with_fdconv=(True, True, True, True), **kwargs):
        super().__init__(**kwargs)
        self.place_fdconv(fdconv_cfg, stage_with_fdconv)
