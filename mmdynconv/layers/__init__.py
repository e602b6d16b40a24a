"""nn.Modules registered in mmengine's root ``MODELS`` (conv types ``'DDF'``, ``'FDConv'``; upsampler ``'ddf_up'``)."""
from .fdconv import FDConv  # noqa: F401  (conv type 'FDConv')
