"""mmdynconv: dynamic convolutions (DDF, DDF-Up, FDConv) for MMDetection and MMSegmentation.

Importing the package registers every layer and model it defines in mmengine's root ``MODELS`` registry, which
is all ``custom_imports = dict(imports=['mmdynconv'])`` needs. ``mmdynconv.ops`` needs torch only: without
mmengine installed, the package imports but registers nothing (``mmdynconv.layers`` then raises ImportError); the
layers need mmengine, the necks and backbones (``mmdynconv.models``) also mmcv.
"""
from ._optional import is_installed
from .version import __version__

if is_installed('mmengine'):
    from . import layers  # noqa: F401  (register conv / upsample layers)
    if is_installed('mmcv'):
        from . import models  # noqa: F401  (register necks and backbones)
    from .utils.config_scope import register_config_scope
    register_config_scope()  # `_base_ = 'mmdynconv::...'` in configs parsed after this import

__all__ = ['__version__']
