from .upsampler_fpn import UpsamplerFPN, build_fpn_upsampler  # noqa: F401

__all__ = ['UpsamplerFPN', 'build_fpn_upsampler']
