"""Functional ops with fused Triton kernels and pure-PyTorch references; depends on torch only (triton optional).

Backend switch: the ``backend`` argument of every op, or the environment variable ``MMDYNCONV_BACKEND``
(see :mod:`mmdynconv.ops.backend`).
"""
from .backend import (BACKENDS, ENV_VAR, resolve_backend, triton_available,
                      triton_interpreter_enabled)
from .ddf import ddf

__all__ = ['ddf', 'BACKENDS', 'ENV_VAR', 'resolve_backend', 'triton_available', 'triton_interpreter_enabled']
