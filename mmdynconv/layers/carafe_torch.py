"""CARAFE upsampler in pure PyTorch (Wang et al., ICCV 2019), registry type ``'carafe_torch'``."""
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch import nn

from ..ops.arguments import check_feature_map, check_int
from ..ops.carafe import carafe
from ..ops.per_sample_conv import conv_dtype
from ..ops.pixel_shuffle import pixel_shuffle

__all__ = ['CARAFETorch']


@MODELS.register_module('carafe_torch')
class CARAFETorch(nn.Module):
    """mmcv's ``CARAFEPack`` (upsampler ``'carafe'``) on any device: same arguments, parameter names and function.

    ``channel_compressor`` (1×1 conv C -> compressed_channels) -> ``content_encoder`` (conv -> G·k_up²·S², kernel
    ``encoder_kernel``, dilation ``encoder_dilation``) -> pixel shuffle ×S -> softmax over the k_up² taps of every
    group -> reassembly :func:`mmdynconv.ops.carafe` (memory-light; mmcv's ``carafe`` kernel has no CPU version).
    A state dict of one loads into the other.

    Args:
        channels: C. scale_factor: integer S >= 1. up_kernel: odd k_up. up_group: G, dividing C.
        encoder_kernel: odd kernel size of the content encoder. encoder_dilation: its dilation.
        compressed_channels: width of the channel compressor.

    Shapes: (B, C, H, W) -> (B, C, S·H, S·W).
    """

    def __init__(self, channels, scale_factor, up_kernel=5, up_group=1, encoder_kernel=3, encoder_dilation=1,
                 compressed_channels=64):
        super().__init__()
        name = 'carafe_torch'
        if isinstance(scale_factor, float) and scale_factor.is_integer():
            scale_factor = int(scale_factor)
        for arg, value, minimum in (('channels', channels, 1), ('scale_factor', scale_factor, 1),
                                    ('up_kernel', up_kernel, 1), ('up_group', up_group, 1),
                                    ('encoder_kernel', encoder_kernel, 1), ('encoder_dilation', encoder_dilation, 1),
                                    ('compressed_channels', compressed_channels, 1)):
            check_int(name, arg, value, minimum)
        for arg, value in (('up_kernel', up_kernel), ('encoder_kernel', encoder_kernel)):
            if value % 2 == 0:
                raise ValueError(f'{name}: {arg} must be odd, got {value}')
        if channels % up_group:
            raise ValueError(f'{name}: up_group ({up_group}) must divide channels ({channels})')
        self.channels, self.scale_factor, self.up_kernel, self.up_group = channels, scale_factor, up_kernel, up_group
        self.encoder_kernel, self.encoder_dilation = encoder_kernel, encoder_dilation
        self.compressed_channels = compressed_channels
        self.channel_compressor = nn.Conv2d(channels, compressed_channels, 1)
        self.content_encoder = nn.Conv2d(compressed_channels, up_kernel ** 2 * up_group * scale_factor ** 2,
                                         encoder_kernel, padding=(encoder_kernel - 1) * encoder_dilation // 2,
                                         dilation=encoder_dilation)
        self.init_weights()

    def init_weights(self):
        """As mmcv: Xavier-uniform convs with zero bias, then the content encoder N(0, 0.001²)."""
        for m in (self.channel_compressor, self.content_encoder):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        nn.init.normal_(self.content_encoder.weight, std=0.001)

    def kernels(self, x):
        """Reassembly kernels (B, G·k_up², S·H, S·W), softmax-normalised over each group's k_up² taps."""
        mask = pixel_shuffle(self.content_encoder(self.channel_compressor(x)), self.scale_factor)
        b, c, h, w = mask.shape
        return F.softmax(mask.view(b, self.up_group, self.up_kernel ** 2, h, w), dim=2).view(b, c, h, w)

    def forward(self, x):
        check_feature_map('carafe_torch', 'input', x, self.channels)
        mask = self.kernels(x)
        dtype = conv_dtype(x)   # the autocast dtype under autocast (the reassembly accumulates in fp32 anyway)
        return carafe(x.to(dtype), mask.to(dtype), self.up_kernel, self.up_group, self.scale_factor)

    def extra_repr(self):
        return (f'{self.channels}, scale_factor={self.scale_factor}, up_kernel={self.up_kernel}, '
                f'up_group={self.up_group}, compressed_channels={self.compressed_channels}')
