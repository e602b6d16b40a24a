"""FilterNorm: standardise generated DDF filters over their k² taps (docs/ddf.md)."""
import torch
import torch.nn as nn

__all__ = ['FilterNorm']

EPS = 1e-10
GAINS = {'relu': 2 ** 0.5, 'linear': 1.0}


class FilterNorm(nn.Module):
    """Standardise every filter over its k² taps, then rescale.

    ``f ← (f − mean) / (unbiased std + 1e-10)``, then multiplied by the constant ``gain / k`` (spatial filters)
    or by a learnable vector of C·k² values initialised as ``randn · gain / k`` (channel filters), with
    ``gain = calculate_gain(nonlinearity)``.

    Args:
        channels: number of filters per sample: heads G (spatial) or channels C (channel).
        kernel_size: k; every filter has k² taps.
        filter_type: 'spatial' — input (B, G·k², H, W), one filter per head and pixel; or
            'channel' — input (B, C·k², 1, 1), one filter per channel.
        nonlinearity: 'relu' (the DDF conv layer) or 'linear' (DDF-Up).
    """

    def __init__(self, channels, kernel_size, filter_type, nonlinearity='relu'):
        super().__init__()
        if filter_type not in ('spatial', 'channel'):
            raise ValueError(f"FilterNorm: filter_type must be 'spatial' or 'channel', got {filter_type!r}")
        if nonlinearity not in GAINS:
            raise ValueError(f'FilterNorm: nonlinearity must be one of {sorted(GAINS)}, got {nonlinearity!r}')
        self.channels, self.kernel_size, self.filter_type = channels, kernel_size, filter_type
        self.nonlinearity = nonlinearity
        scale = GAINS[nonlinearity] / kernel_size
        if filter_type == 'channel':
            self.std = nn.Parameter(torch.randn(channels * kernel_size ** 2) * scale)
        else:
            self.scale = scale

    def forward(self, f):
        """f: (B, n·k², H, W) → same shape and dtype, standardised per filter (half precision computed in fp32)."""
        b, _, h, w = f.shape
        k2 = self.kernel_size ** 2
        acc = torch.promote_types(f.dtype, torch.float32)
        g = f.to(acc).reshape(b, self.channels, k2, h, w)
        if g.numel():   # (torch's std() warns about an empty batch's zero degrees of freedom)
            g = (g - g.mean(dim=2, keepdim=True)) / (g.std(dim=2, keepdim=True) + EPS)
        g = g.reshape(b, self.channels * k2, h, w)
        g = g * (self.std.to(acc).view(1, -1, 1, 1) if self.filter_type == 'channel' else self.scale)
        return g.to(f.dtype)

    def extra_repr(self):
        return (f'channels={self.channels}, kernel_size={self.kernel_size}, filter_type={self.filter_type!r}, '
                f'nonlinearity={self.nonlinearity!r}')
