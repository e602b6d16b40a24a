"""mmdet / mmseg building blocks, registered in mmengine's root ``MODELS``.

Necks need only mmcv. Backbone variants subclass mmdet's or mmseg's ResNets, decode heads mmseg's heads; each is
registered only when its package is installed, so a user of one of them never needs the other.
"""
from . import backbones, decode_heads, necks  # noqa: F401

__all__ = ['backbones', 'decode_heads', 'necks']
