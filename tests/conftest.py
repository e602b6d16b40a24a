"""Shared pytest set-up.

Without a GPU, Triton kernels run through Triton's interpreter: ``TRITON_INTERPRET`` must be set before any module
defining ``@triton.jit`` kernels is imported, so it is set here, before the tests import mmdynconv.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault('TRITON_INTERPRET', '1')
