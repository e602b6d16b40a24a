"""Functional ops with fused Triton kernels and pure-PyTorch references; depends on torch only (triton optional).

The ops: :func:`ddf`, :func:`fdconv_dynamic_conv`, :func:`frequency_band_mix`, :func:`kernel_mixture_conv`,
:func:`carafe` and :func:`sapa`. The modules of ddf, fdconv_dynamic_conv, kernel_mixture_conv, carafe and sapa follow
one pattern (docs/contributing.md): ``OP_NAME`` (the name errors start with), ``OP_BACKENDS`` (the backends the op
implements), ``check_<op>_args`` (argument validation with :mod:`.arguments`), custom ops registered with
:func:`.compat.register_op`, and a ``backend`` argument resolved by :mod:`.backend` (``MMDYNCONV_BACKEND`` forces a
backend wherever the caller leaves ``backend=None``).
"""
from .backend import BACKENDS, ENV_VAR, resolve_backend, triton_available, triton_interpreter_enabled
from .carafe import carafe
from .ddf import ddf
from .fdconv import fdconv_dynamic_conv
from .fdconv_fbm import frequency_band_mix
from .fdconv_inputs import FDConvAttention, FDConvWeight
from .fdconv_oracle import fdconv_oracle, frequency_band_mix_oracle
from .fdconv_spectrum import fourier_band_index, spectrum_scale, spectrum_to_weight, weight_to_spectrum
from .kernel_mixture import kernel_mixture_conv, kernel_mixture_conv_reference
from .sapa import sapa

__all__ = ['ddf', 'fdconv_dynamic_conv', 'frequency_band_mix', 'kernel_mixture_conv', 'carafe', 'sapa',
           'FDConvWeight', 'FDConvAttention', 'fdconv_oracle', 'frequency_band_mix_oracle',
           'kernel_mixture_conv_reference',
           'fourier_band_index', 'spectrum_scale', 'spectrum_to_weight', 'weight_to_spectrum',
           'BACKENDS', 'ENV_VAR', 'resolve_backend', 'triton_available', 'triton_interpreter_enabled']
