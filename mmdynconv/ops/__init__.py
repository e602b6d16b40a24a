"""Functional ops with fused Triton kernels and pure-PyTorch references; depends on torch only (triton optional).

Backend switch: the ``backend`` argument of every op, or the environment variable ``MMDYNCONV_BACKEND``
(see :mod:`mmdynconv.ops.backend`).
"""
from .backend import BACKENDS, ENV_VAR, resolve_backend, triton_available, triton_interpreter_enabled
from .carafe import carafe
from .ddf import ddf
from .fdconv import fdconv_dynamic_conv
from .fdconv_fbm import frequency_band_mix
from .fdconv_oracle import fdconv_oracle, frequency_band_mix_oracle
from .fdconv_spectrum import fourier_band_index, spectrum_scale, spectrum_to_weight, weight_to_spectrum
from .kernel_mixture import kernel_mixture_conv, kernel_mixture_conv_reference

__all__ = ['ddf', 'fdconv_dynamic_conv', 'frequency_band_mix', 'fdconv_oracle', 'frequency_band_mix_oracle',
           'fourier_band_index', 'spectrum_scale', 'spectrum_to_weight', 'weight_to_spectrum', 'BACKENDS', 'ENV_VAR',
           'resolve_backend', 'triton_available', 'triton_interpreter_enabled']
__all__ += ['carafe', 'kernel_mixture_conv', 'kernel_mixture_conv_reference']
