"""Backbone variants; each submodule needing mmdet or mmseg is imported only when that package is installed."""
from ..._optional import is_installed

HAS_MMDET = is_installed('mmdet')
HAS_MMSEG = is_installed('mmseg')

if HAS_MMDET:
    from .fdconv_resnet import DynamicConvResNet, FDConvResNet  # noqa: F401,E402
    from .kw_resnet import KWResNet  # noqa: F401,E402
if HAS_MMSEG:
    from .fdconv_resnet_v1c import DynamicConvResNetV1c, FDConvResNetV1c  # noqa: F401,E402
    from .kw_resnet_v1c import KWResNetV1c  # noqa: F401,E402
