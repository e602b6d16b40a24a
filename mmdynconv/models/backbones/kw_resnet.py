"""mmdet ``ResNet`` with KernelWarehouse convs sharing one warehouse per stage, registered in the root ``MODELS``."""
from mmdet.models.backbones import ResNet
from mmengine.registry import MODELS

from .kw_placement import KernelWarehousePlacementMixin

__all__ = ['KWResNet']


@MODELS.register_module()
class KWResNet(KernelWarehousePlacementMixin, ResNet):
    """mmdet's ``ResNet`` (any depth) with KernelWarehouse; arguments: those of
    :class:`~.kw_placement.KernelWarehousePlacementMixin` (``kw_cfg``, ``stage_with_kw``, ``handover``), then mmdet
    ``ResNet``'s."""
