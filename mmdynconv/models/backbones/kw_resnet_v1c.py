"""mmseg ``ResNetV1c`` with KernelWarehouse convs sharing one warehouse per stage, registered in the root
``MODELS``."""
from mmengine.registry import MODELS
from mmseg.models.backbones import ResNetV1c

from .kw_placement import KernelWarehousePlacementMixin

__all__ = ['KWResNetV1c']


@MODELS.register_module()
class KWResNetV1c(KernelWarehousePlacementMixin, ResNetV1c):
    """mmseg's ``ResNetV1c`` (deep stem) with KernelWarehouse; arguments: those of
    :class:`~.kw_placement.KernelWarehousePlacementMixin`, then mmseg ``ResNetV1c``'s."""
