"""Frequency Band Modulation (docs/fdconv.md) as a module: per-pixel re-weighting of the input's frequency bands."""
import torch
import torch.nn.functional as F
from torch import nn

from ..ops.fdconv_fbm import CUTOFFS, MASK_MODES, frequency_band_mix
from ..ops.fdconv_oracle import frequency_band_mix_oracle

__all__ = ['FrequencyBandModulation']


class FrequencyBandModulation(nn.Module):
    """``x' = Σ_m A_m ⊙ B_m(x) + low(x)`` with ``A = 2·sigmoid(conv3×3(x))``, one map per band: (B, C, H, W) -> same.

    Bands are cut at ``cutoffs`` (default 1/4, 1/8, 1/16 cycles/pixel) with the release's size-dependent masks
    (``mask_mode='release'``) or symmetric square ones (``'symmetric'``), see :mod:`mmdynconv.ops.fdconv_fbm`. The
    3×3 conv (C -> M maps, bias) starts at zero, so A = 1 and the module is exactly the identity at
    initialisation (the release draws it from N(0, 1e-6²): a 1e-6-sized difference we accept for an exact
    identity). This is the released form (bands of the input are modulated before the convolution). Its
    weight is held directly (no ``nn.Conv2d``) so model-wide ``Conv2d`` initialisers leave it alone.
    """

    def __init__(self, in_channels, cutoffs=CUTOFFS, mask_mode='release'):
        super().__init__()
        if mask_mode not in MASK_MODES:
            raise ValueError(f'FrequencyBandModulation: mask_mode must be one of {MASK_MODES}, got {mask_mode!r}')
        self.cutoffs = tuple(cutoffs)
        self.mask_mode = mask_mode
        self.weight = nn.Parameter(torch.empty(len(self.cutoffs), in_channels, 3, 3))
        self.bias = nn.Parameter(torch.empty(len(self.cutoffs)))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)

    def band_attention(self, x):
        """(B, M, H, W) modulation maps A."""
        return 2 * torch.sigmoid(F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype), padding=1))

    def forward(self, x):
        return frequency_band_mix(x, self.band_attention(x), self.cutoffs, self.mask_mode)

    def forward_oracle(self, x):
        """Same result with explicitly materialised bands (the parity oracle)."""
        return frequency_band_mix_oracle(x, self.band_attention(x), self.cutoffs, self.mask_mode)

    def extra_repr(self):
        return f'{self.weight.shape[1]}, cutoffs={self.cutoffs}, mask_mode={self.mask_mode!r}'
