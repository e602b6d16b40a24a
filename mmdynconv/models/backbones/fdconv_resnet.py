"""mmdet ``ResNet`` with FDConv in every bottleneck conv, registered in the root ``MODELS``."""
from mmdet.models.backbones import ResNet
from mmengine.registry import MODELS

from .fdconv_placement import FDConvPlacementMixin


@MODELS.register_module()
class FDConvResNet(FDConvPlacementMixin, ResNet):
    """mmdet's ``ResNet`` (Bottleneck depths 50/101/152) with FDConv's published placement.

    Args:
        fdconv_cfg: FDConv options, e.g. ``dict(type='FDConv', kernel_num=64)``.
        stage_with_fdconv: one flag per stage.
        **kwargs: mmdet ``ResNet`` arguments. ``init_cfg=dict(type='Pretrained', checkpoint=...)`` accepts an
            ordinary ResNet checkpoint: conv weights are converted to FDConv spectra when loaded.
    """

    def __init__(self, fdconv_cfg=dict(type='FDConv'), stage_with_fdconv=(True, True, True, True), **kwargs):
        super().__init__(**kwargs)
        self.place_fdconv(fdconv_cfg, stage_with_fdconv)
