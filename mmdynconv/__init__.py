"""mmdynconv: dynamic convolutions (DDF, DDF-Up, FDConv) for MMDetection and MMSegmentation.

Importing the package registers every layer and model it defines in mmengine's root ``MODELS`` registry, which
is all ``custom_imports = dict(imports=['mmdynconv'])`` needs. ``mmdynconv.ops`` depends on torch only.
"""
from .version import __version__
from . import layers  # noqa: F401,E402  (registers conv / upsample layers)
from . import models  # noqa: F401,E402  (registers necks and backbones)

__all__ = ['__version__']
