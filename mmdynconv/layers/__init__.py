"""nn.Modules registered in mmengine's root ``MODELS`` (conv types ``'DDF'``, ``'FDConv'``; upsampler ``'ddf_up'``)."""
from .ddf_conv import DDFConv  # noqa: F401  (conv type 'DDF')
from .ddf_upsample import DDFUpsample  # noqa: F401  (upsampler 'ddf_up')
from .filter_norm import FilterNorm  # noqa: F401
from .fdconv import FDConv  # noqa: F401  (conv type 'FDConv')
