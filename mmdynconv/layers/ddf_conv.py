"""DDF conv layer, registry type ``'DDF'`` (the authors' "DDFPack", docs/ddf.md)."""
import torch
import torch.nn as nn
from mmengine.registry import MODELS

from ..ops import ddf
from ..ops.arguments import check_feature_map, check_pair
from .ddf_branches import ChannelFilterBranch, check_ddf_args
from .filter_norm import FilterNorm

__all__ = ['RELEASE_KEYS', 'DDFConv']

# parameter names of the authors' ``DDFPack`` (official ddfnet ImageNet checkpoints) -> ours
RELEASE_KEYS = {'spatial_branch.0.': 'spatial_conv.', 'channel_branch.1.': 'channel_branch.squeeze.',
                'channel_branch.3.': 'channel_branch.expand.', 'channel_branch.4.std': 'channel_branch.norm.std'}


def _single(name, value):
    """An int, or a pair of equal ints (conv-style arguments); anything else is an error."""
    first, second = check_pair('DDF', name, value)
    if first != second:
        raise ValueError(f'DDF: {name} must be an int or a pair of equal ints, got {value!r}')
    return first


@MODELS.register_module('DDF')
class DDFConv(nn.Module):
    """Decoupled dynamic filter as a drop-in k×k conv.

    A depthwise, content-adaptive filter: every output pixel gets a spatial filter (1×1 conv, stride s, shared by
    the channels of a head) combined with a per-sample channel filter (SE branch), both FilterNorm-ed.

    Takes the arguments ``mmcv.cnn.build_conv_layer`` passes, so it fits ``conv_cfg=dict(type='DDF')`` or the
    ResNet bottleneck's ``dcn=dict(type='DDF', fallback_on_stride=False)`` slot. The op never mixes channels:
    ``out_channels`` must equal ``in_channels``; ``groups`` may be 1 (it then replaces a dense conv, as in the
    paper's DDF-ResNet) or ``in_channels``.

    Args:
        in_channels, out_channels: C (must be equal).
        kernel_size: odd k >= 3. stride, dilation: ints >= 1.
        padding: None or the conv-equivalent ``dilation·(k−1)/2`` (the only padding DDF computes).
        groups: 1 or in_channels. bias: add a learnable per-channel bias.
        heads: G spatial-filter heads (divides C). kernel_combine: 'mul' or 'add'.
        se_ratio: channel-branch squeeze ratio, mid = max(⌊C·se_ratio⌋, 1).
        nonlinearity: FilterNorm gain, 'relu' (default, as published) or 'linear'.
        backend: op backend, None (auto), 'reference' or 'triton' (see ``mmdynconv.ops.ddf``).

    Shapes: (B, C, H, W) → (B, C, ⌈H/s⌉, ⌈W/s⌉).

    State dicts in the authors' ``DDFPack`` layout (``spatial_branch.0``, ``channel_branch.{1,3,4}``; the official
    DDF-ResNet ImageNet checkpoints) are renamed to this layout while loading, so they load through
    ``init_cfg=dict(type='Pretrained', checkpoint=...)`` as they are.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=None, dilation=1, groups=1,
                 bias=False, heads=1, kernel_combine='mul', se_ratio=0.2, nonlinearity='relu', backend=None):
        super().__init__()
        if in_channels != out_channels:
            raise ValueError(f'DDF: out_channels must equal in_channels ({in_channels}): the decoupled dynamic '
                             f'filter is depthwise and cannot change the channel count, got {out_channels}')
        kernel_size, stride = _single('kernel_size', kernel_size), _single('stride', stride)
        dilation = _single('dilation', dilation)
        check_ddf_args('DDF', in_channels, kernel_size, heads, kernel_combine, se_ratio, nonlinearity)
        if stride < 1 or dilation < 1:
            raise ValueError(f'DDF: stride and dilation must be >= 1, got stride={stride}, dilation={dilation}')
        implied = dilation * (kernel_size - 1) // 2
        if padding is not None and _single('padding', padding) != implied:
            raise ValueError(f'DDF: padding is implied by kernel_size and dilation and must be {implied} '
                             f'(= dilation·(k−1)/2) or None, got {padding!r}')
        if groups not in (1, in_channels):
            raise ValueError(f'DDF: groups must be 1 or in_channels ({in_channels}), got {groups!r}')
        self.in_channels = self.out_channels = in_channels
        self.kernel_size, self.stride, self.dilation, self.padding = kernel_size, stride, dilation, implied
        self.heads, self.kernel_combine, self.backend = heads, kernel_combine, backend
        self.spatial_conv = nn.Conv2d(in_channels, heads * kernel_size ** 2, 1, stride=stride)
        self.spatial_norm = FilterNorm(heads, kernel_size, 'spatial', nonlinearity)
        self.channel_branch = ChannelFilterBranch(in_channels, kernel_size, se_ratio, nonlinearity)
        self.bias = nn.Parameter(torch.zeros(in_channels)) if bias else None
        self.init_weights()

    def init_weights(self):
        for m in (self.spatial_conv, self.channel_branch.squeeze, self.channel_branch.expand):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            nn.init.zeros_(m.bias)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for key in [k for k in state_dict if k.startswith(prefix)]:
            for old, new in RELEASE_KEYS.items():
                if key.startswith(prefix + old) and key.replace(old, new, 1) not in state_dict:
                    state_dict[key.replace(old, new, 1)] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x):
        check_feature_map('DDF', 'input', x, self.in_channels)
        fs = self.spatial_norm(self.spatial_conv(x)).to(x.dtype)
        fc = self.channel_branch(x).to(x.dtype)
        out = ddf(x, fc, fs, self.kernel_size, self.stride, self.dilation, self.kernel_combine, self.backend)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1).to(out.dtype)
        return out

    def extra_repr(self):
        return (f'{self.in_channels}, kernel_size={self.kernel_size}, stride={self.stride}, '
                f'dilation={self.dilation}, heads={self.heads}, kernel_combine={self.kernel_combine!r}')
