"""Filter-generating branches shared by the DDF conv layer and the DDF-Up upsampler (docs/ddf.md)."""
import torch.nn as nn
import torch.nn.functional as F

from .filter_norm import FilterNorm

__all__ = ['check_ddf_args', 'ChannelFilterBranch']


def check_ddf_args(layer, channels, kernel_size, heads, kernel_combine, se_ratio, nonlinearity='relu'):
    """Validate the arguments every DDF layer shares; raise naming the bad one."""
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f'{layer}: channels must be a positive int, got {channels!r}')
    if not isinstance(kernel_size, int) or kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f'{layer}: kernel_size must be an odd int >= 3, got {kernel_size!r}')
    if not isinstance(heads, int) or heads < 1 or channels % heads:
        raise ValueError(f'{layer}: heads must be a positive int dividing the {channels} channels, got {heads!r}')
    if kernel_combine not in ('mul', 'add'):
        raise ValueError(f"{layer}: kernel_combine must be 'mul' or 'add', got {kernel_combine!r}")
    if not isinstance(se_ratio, (int, float)) or se_ratio <= 0:
        raise ValueError(f'{layer}: se_ratio must be a positive number, got {se_ratio!r}')
    if nonlinearity not in ('relu', 'linear'):
        raise ValueError(f"{layer}: nonlinearity must be 'relu' or 'linear', got {nonlinearity!r}")


class ChannelFilterBranch(nn.Module):
    """SE-style channel-filter generator: GAP → 1×1 (C → mid) → ReLU → 1×1 (mid → C·k²) → FilterNorm(channel).

    ``mid = max(⌊C·se_ratio⌋, 1)``. Input (B, C, H, W); output (B, C, k, k).
    """

    def __init__(self, channels, kernel_size, se_ratio=0.2, nonlinearity='relu'):
        super().__init__()
        mid = max(int(channels * se_ratio), 1)
        self.kernel_size = kernel_size
        self.squeeze = nn.Conv2d(channels, mid, 1)
        self.expand = nn.Conv2d(mid, channels * kernel_size ** 2, 1)
        self.norm = FilterNorm(channels, kernel_size, 'channel', nonlinearity)

    def forward(self, x):
        b, c = x.shape[:2]
        f = self.expand(F.relu(self.squeeze(F.adaptive_avg_pool2d(x, 1))))
        return self.norm(f).reshape(b, c, self.kernel_size, self.kernel_size)
