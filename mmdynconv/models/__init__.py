"""mmdet / mmseg building blocks, registered in mmengine's root ``MODELS``.

Necks need only mmcv. Backbone variants subclass mmdet's or mmseg's ResNets and are registered only when that
package is installed, so a user of one of them never needs the other.
"""
from . import backbones, necks  # noqa: F401

__all__ = ['backbones', 'necks']
