"""Functional ops with fused Triton kernels and pure-PyTorch references; depends on torch only (triton optional).

Backend switch: the ``backend`` argument of every op, or the environment variable ``MMDYNCONV_BACKEND``
(see :mod:`mmdynconv.ops.backend`).
"""
from .backend import (BACKENDS, ENV_VAR, resolve_backend, triton_available,
                      triton_interpreter_enabled)
from .ddf import ddf
from .fdconv_dynamic import fdconv_dynamic_conv
from .fdconv_fbm import frequency_band_mix
from .fdconv_reference import fdconv_reference, frequency_band_mix_reference
from .fdconv_spectrum import fourier_band_index, spectrum_to_weight, weight_to_spectrum

__all__ = ['ddf', 'fdconv_dynamic_conv', 'frequency_band_mix', 'fdconv_reference', 'frequency_band_mix_reference',
           'fourier_band_index', 'spectrum_to_weight', 'weight_to_spectrum', 'BACKENDS', 'ENV_VAR',
           'resolve_backend', 'triton_available', 'triton_interpreter_enabled']
