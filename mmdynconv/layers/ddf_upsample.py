"""DDF-Up upsampler, registry type ``'ddf_up'`` (the authors' "DDFUpPack", docs/ddf.md)."""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.registry import MODELS

from ..ops import ddf
from ..ops.arguments import check_feature_map
from ..ops.pixel_shuffle import pixel_shuffle, pixel_unshuffle
from .ddf_branches import check_ddf_args
from .filter_norm import FilterNorm

__all__ = ['DDFUpsample']


@MODELS.register_module('ddf_up')
class DDFUpsample(nn.Module):
    """Content-adaptive ×S upsampling with decoupled dynamic filters.

    S² independent (spatial branch, channel branch) pairs, one per sub-pixel position n = p·S + q, each run a
    stride-1 DDF on the low-resolution input; ``out[b, c, S·y + p, S·x + q] = DDF_n(x)[b, c, y, x]``.
    The S² pairs are computed as grouped convs (parameters stay independent per pair).

    - Spatial branch of a pair: depthwise 3×3 conv → 1×1 conv → G·k² → FilterNorm(spatial, 'linear').
    - Channel branch of a pair: GAP → 1×1 (C → mid) → ReLU → 1×1 (mid → C·k²) → FilterNorm(channel, 'linear'),
      ``mid = max(⌊C·se_ratio⌋, 1)``.

    Guided (joint) upsampling: with ``guidance_channels`` set, ``forward(x, guidance)`` drives the spatial branches
    with a guidance tensor (e.g. RGB features guiding depth) instead of x; the channel branches still read x.
    ``guidance_at='input'``: guidance is (B, Cg, H, W). ``guidance_at='output'``: guidance is (B, Cg, S·H, S·W) and
    is pixel-unshuffled to (B, Cg·S², H, W), so every low-resolution position sees the full-resolution guidance of
    the S×S output pixels it produces (no information is lost by resizing). Built with ``guidance_at='output'``, the
    instance has ``takes_guidance = True`` (the ``UpsamplerFPN`` guidance protocol): in ``UpsamplerFPN``, with
    ``guidance_channels`` = the FPN's ``out_channels``, it is guided by the finer level's lateral.

    Args:
        channels: C of x (mmcv's upsampler convention, as for ``'carafe'``).
        scale_factor: integer S >= 2.
        kernel_size: odd k >= 3. dilation: int >= 1. heads: G, divides C. kernel_combine: 'mul' or 'add'.
        se_ratio: channel-branch squeeze ratio. guidance_channels: Cg, or None for plain upsampling.
        guidance_at: 'input' or 'output' resolution of the guidance. backend: op backend (``mmdynconv.ops.ddf``).

    Shapes: x (B, C, H, W) → (B, C, S·H, S·W).
    """

    takes_guidance = False   # True on an instance built with guidance at the output's resolution

    def __init__(self, channels, scale_factor=2, kernel_size=3, dilation=1, heads=1, kernel_combine='mul',
                 se_ratio=0.2, guidance_channels=None, guidance_at='input', backend=None):
        super().__init__()
        check_ddf_args('ddf_up', channels, kernel_size, heads, kernel_combine, se_ratio)
        if isinstance(scale_factor, float) and scale_factor.is_integer():
            scale_factor = int(scale_factor)
        if not isinstance(scale_factor, int) or isinstance(scale_factor, bool) or scale_factor < 2:
            raise ValueError(f'ddf_up: scale_factor must be an integer >= 2, got {scale_factor!r}')
        if not isinstance(dilation, int) or dilation < 1:
            raise ValueError(f'ddf_up: dilation must be an int >= 1, got {dilation!r}')
        if guidance_channels is not None and (not isinstance(guidance_channels, int) or guidance_channels < 1):
            raise ValueError(f'ddf_up: guidance_channels must be None or a positive int, got {guidance_channels!r}')
        if guidance_at not in ('input', 'output'):
            raise ValueError(f"ddf_up: guidance_at must be 'input' or 'output', got {guidance_at!r}")
        self.channels, self.scale_factor = channels, scale_factor
        self.kernel_size, self.dilation = kernel_size, dilation
        self.heads, self.kernel_combine, self.backend = heads, kernel_combine, backend
        self.guidance_channels, self.guidance_at = guidance_channels, guidance_at
        self.takes_guidance = guidance_channels is not None and guidance_at == 'output'
        n, k2 = scale_factor ** 2, kernel_size ** 2
        spatial_in = channels if guidance_channels is None else guidance_channels
        if guidance_channels is not None and guidance_at == 'output':
            spatial_in *= n
        mid = max(int(channels * se_ratio), 1)
        self.spatial_dw = nn.Conv2d(spatial_in, spatial_in * n, 3, padding=1, groups=spatial_in)
        self.spatial_pw = nn.Conv2d(spatial_in * n, heads * k2 * n, 1, groups=n)
        self.spatial_norm = FilterNorm(heads * n, kernel_size, 'spatial', 'linear')
        self.channel_squeeze = nn.Conv2d(channels, mid * n, 1)
        self.channel_expand = nn.Conv2d(mid * n, channels * k2 * n, 1, groups=n)
        self.channel_norm = FilterNorm(channels * n, kernel_size, 'channel', 'linear')
        self.init_weights()

    def init_weights(self):
        for m in (self.spatial_dw, self.spatial_pw, self.channel_squeeze, self.channel_expand):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            nn.init.zeros_(m.bias)

    def _spatial_input(self, x, guidance):
        b, _, h, w = x.shape
        if self.guidance_channels is None:
            if guidance is not None:
                raise ValueError('ddf_up: got a guidance tensor, but the layer was built without guidance_channels')
            return x
        s = self.scale_factor
        size = (h, w) if self.guidance_at == 'input' else (s * h, s * w)
        expected = (b, self.guidance_channels) + size
        if guidance is None or tuple(guidance.shape) != expected:
            got = None if guidance is None else tuple(guidance.shape)
            raise ValueError(f"ddf_up: guidance must have shape {expected} (guidance_at={self.guidance_at!r}), "
                             f'got {got}')
        guidance = guidance.to(x.dtype)
        return guidance if self.guidance_at == 'input' else pixel_unshuffle(guidance, s)

    def forward(self, x, guidance=None):
        """x: (B, C, H, W); guidance: see the class docstring. Returns (B, C, S·H, S·W)."""
        check_feature_map('ddf_up', 'input', x, self.channels)
        b, c, h, w = x.shape
        s, k = self.scale_factor, self.kernel_size
        n, gk2 = s * s, self.heads * k * k
        g = self.spatial_dw(self._spatial_input(x, guidance))  # (B, Cin·n, H, W), input-channel-major
        cin = g.shape[1] // n
        g = g.reshape(b, cin, n, h, w).transpose(1, 2).reshape(b, n * cin, h, w)  # pair-major for the grouped 1×1
        fs = self.spatial_norm(self.spatial_pw(g)).to(x.dtype)  # (B, n·G·k², H, W)
        fc = self.channel_expand(F.relu(self.channel_squeeze(F.adaptive_avg_pool2d(x, 1))))
        fc = self.channel_norm(fc).to(x.dtype).reshape(b, n, c, k, k)
        outs = [ddf(x, fc[:, i], fs[:, i * gk2:(i + 1) * gk2], k, 1, self.dilation, self.kernel_combine,
                    self.backend) for i in range(n)]
        return pixel_shuffle(torch.stack(outs, dim=2).reshape(b, c * n, h, w), s)

    def extra_repr(self):
        guided = '' if self.guidance_channels is None else \
            f', guidance_channels={self.guidance_channels}, guidance_at={self.guidance_at!r}'
        return (f'{self.channels}, scale_factor={self.scale_factor}, kernel_size={self.kernel_size}, '
                f'heads={self.heads}, kernel_combine={self.kernel_combine!r}{guided}')
