"""Backbone variants; each submodule needing mmdet or mmseg is imported only when that package is installed."""
from importlib.util import find_spec

HAS_MMDET = find_spec('mmdet') is not None
HAS_MMSEG = find_spec('mmseg') is not None

if HAS_MMDET:
    from .fdconv_resnet import FDConvResNet  # noqa: F401,E402
if HAS_MMSEG:
    from .fdconv_resnet_v1c import FDConvResNetV1c  # noqa: F401,E402
