"""nn.Modules registered in mmengine's root ``MODELS`` (conv types ``'DDF'``, ``'FDConv'``; upsampler ``'ddf_up'``)."""
from .carafe_torch import CARAFETorch  # noqa: F401  (upsampler 'carafe_torch')
from .cond_conv import CondConv  # noqa: F401  (conv type 'CondConv')
from .dcd_conv import DCDConv  # noqa: F401  (conv type 'DCD')
from .ddf_conv import DDFConv  # noqa: F401  (conv type 'DDF')
from .ddf_upsample import DDFUpsample  # noqa: F401  (upsampler 'ddf_up')
from .dy_conv import DYConv  # noqa: F401  (conv type 'DYConv')
from .dysample import DySample  # noqa: F401  (upsampler 'dysample')
from .fade_upsample import FADE  # noqa: F401  (upsampler 'fade')
from .fdconv import FDConv  # noqa: F401  (conv type 'FDConv')
from .filter_norm import FilterNorm  # noqa: F401
from .od_conv import ODConv  # noqa: F401  (conv type 'ODConv')
from .sapa_upsample import SAPA  # noqa: F401  (upsampler 'sapa')
from .temperature_hook import TemperatureAnnealHook  # noqa: F401  (hook 'TemperatureAnnealHook')
