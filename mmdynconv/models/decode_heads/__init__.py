"""Decode heads; registered only when mmseg is installed."""
from ..._optional import is_installed

if is_installed('mmseg'):
    from .upsampler_segformer_head import UpsamplerSegformerHead  # noqa: F401
    from .upsampler_uper_head import UpsamplerUPerHead  # noqa: F401
