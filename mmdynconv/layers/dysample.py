"""DySample (Liu et al., ICCV 2023, "Learning to Upsample by Learning to Sample"), registry type ``'dysample'``."""
import torch
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch import nn

from ..ops.arguments import check_feature_map, check_int
from ..ops.pixel_shuffle import pixel_shuffle

__all__ = ['DySample']


@MODELS.register_module('dysample')
class DySample(nn.Module):
    """Upsampling by point sampling at content-dependent offsets: the 'lp' (linear, then pixel shuffle) style.

    For a ×S upsampling with G groups, ``offset`` (1×1 conv C -> 2·G·S², bias) predicts per low-resolution pixel
    and group the (x, y) displacement of each of the S² output sub-pixels, in input pixels:

    - static scope (default): ``o = 0.25 · offset(x) + p0``; dynamic scope (``dyscope=True``, the paper's "+"
      variant): ``o = 0.5 · sigmoid(scope(x)) · offset(x) + p0`` with ``scope`` a 1×1 conv without bias (as in the
      paper's formula and the authors' current release; their first upload had a bias);
    - p0 (buffer ``init_pos``, (1, 2·G·S², 1, 1)): the sub-pixel centres of bilinear upsampling, ((2q + 1)/S − 1)/2
      for x and ((2p + 1)/S − 1)/2 for y at sub-pixel (p, q);
    - channels of o: [x or y][group][p·S + q]; pixel-shuffled to (B, 2·G, S·H, S·W), so output pixel (S·h + p,
      S·w + q) of group g samples x's channels of group g at (w + 0.5 + o_x, h + 0.5 + o_y) (pixel-centre
      coordinates) with ``grid_sample`` (bilinear, align_corners=False, border padding).

    Parameter and buffer names and shapes are the authors' (``offset.weight``, ``offset.bias``, ``scope.weight``,
    ``init_pos``), so a state dict of their module loads with ``strict=True`` and vice versa. Initialisation:
    ``offset`` N(0, 0.001²) with zero bias, ``scope`` all zero, so the layer starts as (almost) bilinear upsampling.

    Args:
        channels: C. scale_factor: integer S >= 2. groups: G, dividing C (4 in the paper). style: 'lp' only
            ('pl' is not implemented). dyscope: dynamic scope factor.

    Shapes: (B, C, H, W) -> (B, C, S·H, S·W).
    """

    def __init__(self, channels, scale_factor=2, groups=4, style='lp', dyscope=False):
        super().__init__()
        name = 'dysample'
        if isinstance(scale_factor, float) and scale_factor.is_integer():
            scale_factor = int(scale_factor)
        check_int(name, 'channels', channels, 1)
        check_int(name, 'scale_factor', scale_factor, 2)
        check_int(name, 'groups', groups, 1)
        if channels % groups:
            raise ValueError(f'{name}: groups ({groups}) must divide channels ({channels})')
        if style != 'lp':
            raise ValueError(f"{name}: style must be 'lp' (the 'pl' style is not implemented), got {style!r}")
        if not isinstance(dyscope, bool):
            raise TypeError(f'{name}: dyscope must be a bool, got {dyscope!r}')
        self.channels, self.scale_factor, self.groups, self.style = channels, scale_factor, groups, style
        out = 2 * groups * scale_factor ** 2
        self.offset = nn.Conv2d(channels, out, 1)
        self.scope = nn.Conv2d(channels, out, 1, bias=False) if dyscope else None
        self.register_buffer('init_pos', self.initial_positions(scale_factor, groups))
        self.init_weights()

    @staticmethod
    def initial_positions(s, groups):
        """p0: (1, 2·G·S², 1, 1), channel d·G·S² + g·S² + p·S + q = x (d = 0) or y (d = 1) offset of sub-pixel
        (p, q) from its low-resolution pixel's centre, in input pixels."""
        centre = (torch.arange(s, dtype=torch.float32) - (s - 1) / 2) / s   # (S,): ((2q + 1)/S − 1)/2
        x = centre.view(1, s).expand(s, s)                                   # depends on the column q
        y = centre.view(s, 1).expand(s, s)                                   # depends on the row p
        return torch.stack([x, y]).view(2, 1, s * s).expand(2, groups, s * s).reshape(1, -1, 1, 1).clone()

    def init_weights(self):
        nn.init.normal_(self.offset.weight, std=0.001)
        nn.init.zeros_(self.offset.bias)
        if self.scope is not None:
            nn.init.zeros_(self.scope.weight)

    def offsets(self, x):
        """o: (B, 2·G·S², H, W) in input pixels."""
        if self.scope is None:
            return self.offset(x) * 0.25 + self.init_pos.to(x.dtype)
        return self.offset(x) * self.scope(x).sigmoid() * 0.5 + self.init_pos.to(x.dtype)

    def forward(self, x):
        check_feature_map('dysample', 'input', x, self.channels)
        b, c, h, w = x.shape
        s, g = self.scale_factor, self.groups
        offset = self.offsets(x).view(b, 2, g * s * s, h, w)
        # pixel-centre coordinates (x + 0.5, y + 0.5) + offset, normalised to grid_sample's [-1, 1]
        cx = (torch.arange(w, device=x.device, dtype=offset.dtype) + 0.5).view(1, 1, 1, w)
        cy = (torch.arange(h, device=x.device, dtype=offset.dtype) + 0.5).view(1, 1, h, 1)
        gx = (offset[:, 0] + cx) * (2 / w) - 1
        gy = (offset[:, 1] + cy) * (2 / h) - 1
        grid = torch.stack([gx, gy], 1).view(b, 2 * g * s * s, h, w)
        grid = pixel_shuffle(grid, s).view(b, 2, g, s * h, s * w).permute(0, 2, 3, 4, 1)   # (B, G, SH, SW, 2)
        grid = grid.reshape(b * g, s * h, s * w, 2)
        out = F.grid_sample(x.reshape(b * g, c // g, h, w), grid.to(x.dtype), mode='bilinear',
                            padding_mode='border', align_corners=False)
        return out.view(b, c, s * h, s * w)

    def extra_repr(self):
        return (f'{self.channels}, scale_factor={self.scale_factor}, groups={self.groups}, style={self.style!r}, '
                f'dyscope={self.scope is not None}')
