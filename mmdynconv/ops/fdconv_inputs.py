"""The tensors of FDConv's dynamic convolution (docs/fdconv.md) grouped by where they come from: the layer's static
parameters (:class:`FDConvWeight`) and the per-sample attentions of its KSM (:class:`FDConvAttention`). Both
:func:`mmdynconv.ops.fdconv_dynamic_conv` and :func:`mmdynconv.ops.fdconv_oracle.fdconv_oracle` take them.

Shapes below: B samples, Ci / Co input / output channels, k the square kernel size, n the number of frequency bands,
κ the odd width of the KSM local 1-D conv.
"""
from typing import NamedTuple, Optional, Union

import torch

__all__ = ['FDConvWeight', 'FDConvAttention', 'check_fdconv_inputs']


class FDConvWeight(NamedTuple):
    """An FDConv layer's static parameters.

    Attributes:
        spectrum: (Co·k, ⌊Ci·k/2⌋+1, 2) FDW parameter (k and Co are derived from it and from ``out_att``).
        band_index: int64 (Co·k, ⌊Ci·k/2⌋+1), values in [0, n) (n = kernel_att's width).
        scale: α = s·n multiplying the spectrum (s = ⌊min(Ci, Co)/2⌋ clamped to ≥ 1), a Python number.
        local_weight: (Co·k², 1, κ) the KSM local branch's 1-D conv weight (output channel o·k² + u·k + v ↔ entry
            (o, ·, u, v)).
    """
    spectrum: torch.Tensor
    band_index: torch.Tensor
    scale: Union[int, float]
    local_weight: torch.Tensor


class FDConvAttention(NamedTuple):
    """The per-sample attentions an FDConv layer's KSM computes from its input.

    Attributes:
        kernel_att: (B, n) kernel attention π, or None when n = 1.
        local_feat: (B, Ci) layer-normalised pooled input of the KSM local branch.
        pos_att: (B, k²) kernel-position attention, or None when k = 1.
        in_att: (B, Ci) input-channel attention.
        out_att: (B, Co) output-channel attention.
    """
    kernel_att: Optional[torch.Tensor]
    local_feat: torch.Tensor
    pos_att: Optional[torch.Tensor]
    in_att: torch.Tensor
    out_att: torch.Tensor


_EXPECTED = {'weight': FDConvWeight, 'att': FDConvAttention}


def check_fdconv_inputs(owner, **structures):
    """Raise TypeError naming the argument unless each of ``weight=`` / ``att=`` given is an :class:`FDConvWeight` /
    an :class:`FDConvAttention` (the tensors inside are the callers' to check)."""
    for name, value in structures.items():
        expected = _EXPECTED[name]
        if not isinstance(value, expected):
            raise TypeError(f'{owner}: {name} must be an {expected.__name__} (mmdynconv.ops.{expected.__name__}), '
                            f'got {type(value).__name__}')
