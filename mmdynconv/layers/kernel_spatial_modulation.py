"""Kernel Spatial Modulation (docs/fdconv.md): the attentions that modulate FDConv's kernel per sample.

Both branches read the pooled input g (B, Ci). Parameters are held directly (no ``nn.Linear``/``nn.Conv*``
submodules), so model-wide initialisers such as mmdet's ``Kaiming(layer='Conv2d')`` leave the identity
initialisation alone.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from .star_relu import StarReLU

__all__ = ['AttentionHead', 'KernelSpatialModulationGlobal', 'ksm_norms_train', 'default_local_kernel_size',
           'KernelSpatialModulationLocal']

HEAD_INIT_STD = 1e-6


class AttentionHead(nn.Module):
    """``2 · sigmoid(z W^T + b) / divisor``: (B, A) -> (B, out_features); ≈ 1/divisor at initialisation.

    Weights start at N(0, 1e-6²) and the bias at 0, so the head starts (almost exactly) at the identity.
    """

    def __init__(self, in_features, out_features, divisor=1):
        super().__init__()
        self.divisor = divisor
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.normal_(self.weight, std=HEAD_INIT_STD)
        nn.init.zeros_(self.bias)

    def forward(self, z):
        att = 2 * torch.sigmoid(F.linear(z, self.weight, self.bias))
        return att if self.divisor == 1 else att / self.divisor

    def extra_repr(self):
        return f'{self.weight.shape[1]}, {self.weight.shape[0]}, divisor={self.divisor}'


class KernelSpatialModulationGlobal(nn.Module):
    """ODConv-style global branch: g -> linear (no bias) -> BatchNorm -> StarReLU -> four attention heads.

    Args:
        in_channels, out_channels, kernel_size, kernel_num: the FDConv's Ci, Co, k, n.
        reduction, min_channels: trunk width A = max(⌊Ci / reduction⌋, min_channels).

    ``forward(g)`` with g (B, Ci) returns ``(in_att (B, Ci), out_att (B, Co), pos_att (B, k²) or None for k = 1,
    kernel_att (B, n) or None for n = 1)``; π = 2·sigmoid(·)/n sums to ≈ 1 at initialisation.

    Batch statistics of a BatchNorm over B pooled vectors do not exist for B = 1: a training-mode forward with one
    sample normalises with (and does not update) the running statistics instead of failing. (SyncBatchNorm, whose
    statistics span all processes, is left to itself.)
    """

    def __init__(self, in_channels, out_channels, kernel_size, kernel_num, reduction=16, min_channels=16):
        super().__init__()
        width = max(in_channels // reduction, min_channels)
        self.fc_weight = nn.Parameter(torch.empty(width, in_channels))
        self.norm = nn.BatchNorm1d(width)
        self.act = StarReLU()
        self.in_head = AttentionHead(width, in_channels)
        self.out_head = AttentionHead(width, out_channels)
        self.pos_head = AttentionHead(width, kernel_size * kernel_size) if kernel_size > 1 else None
        self.kernel_head = AttentionHead(width, kernel_num, divisor=kernel_num) if kernel_num > 1 else None
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.kaiming_normal_(self.fc_weight, mode='fan_out', nonlinearity='relu')
        self.norm.reset_parameters()
        self.act.reset_parameters()
        for head in (self.in_head, self.out_head, self.pos_head, self.kernel_head):
            if head is not None:
                head.reset_parameters()

    def _normalise(self, z):
        if self.norm.training and z.shape[0] == 1 and not isinstance(self.norm, nn.SyncBatchNorm):
            n = self.norm
            return F.batch_norm(z, n.running_mean, n.running_var, n.weight, n.bias, False, 0.0, n.eps)
        return self.norm(z)

    def forward(self, g):
        z = self.act(self._normalise(F.linear(g, self.fc_weight)))
        pos = self.pos_head(z) if self.pos_head is not None else None
        kernel = self.kernel_head(z) if self.kernel_head is not None else None
        return self.in_head(z), self.out_head(z), pos, kernel


def ksm_norms_train(model):
    """Put the BatchNorm of every FDConv KSM global branch in ``model`` in training mode; return how many.

    mmdet/mmseg's ``norm_eval=True`` and frozen stages put every BatchNorm of a backbone in eval mode. The KSM ones
    have no pretrained statistics when a plain checkpoint is converted (mean 0, variance 1), so in eval mode they do
    not normalise the attention trunk and its attentions can run away while fine-tuning (docs/comparison.md).
    """
    norms = [m.norm for m in model.modules() if isinstance(m, KernelSpatialModulationGlobal)]
    for norm in norms:
        norm.train()
    return len(norms)


def default_local_kernel_size(in_channels):
    """κ of the local branch's 1-D conv, the release's ECA rule ``round(log2(Ci)/2 + 0.5) // 2 · 2 + 1``.

    3 for 4 ≤ Ci ≤ 63, 5 for 64 ≤ Ci ≤ 1023, 7 for 1024 ≤ Ci ≤ 16383 (Python's round, half to even).
    """
    return round(math.log2(in_channels) / 2 + 0.5) // 2 * 2 + 1


class KernelSpatialModulationLocal(nn.Module):
    """ECA-style local branch: LayerNorm over Ci, then a 1-D conv across channels giving one logit per weight entry.

    Holds ``norm`` (LayerNorm(Ci)) and ``weight`` (Co·k², 1, κ), initialised to 1e-6 (attention ≈ 1). Output channel
    o·k² + u·k + v at channel position i is the logit of weight entry (o, i, u, v); the attention is
    2·sigmoid(logit). ``forward(g)`` returns the normalised features (B, Ci); the dense (B, Co, Ci, k, k) attention
    is built inside :func:`mmdynconv.ops.fdconv_dynamic_conv` (or by
    :func:`mmdynconv.ops.fdconv_oracle.local_attention_oracle`).
    """

    def __init__(self, in_channels, out_channels, kernel_size, local_kernel_size=None):
        super().__init__()
        kappa = default_local_kernel_size(in_channels) if local_kernel_size is None else local_kernel_size
        self.norm = nn.LayerNorm(in_channels)
        self.weight = nn.Parameter(torch.empty(out_channels * kernel_size * kernel_size, 1, kappa))
        self.reset_parameters()

    def reset_parameters(self):
        self.norm.reset_parameters()
        nn.init.constant_(self.weight, 1e-6)

    def forward(self, g):
        return self.norm(g)

    def extra_repr(self):
        return f'kernel_size={self.weight.shape[-1]}, out_logits={self.weight.shape[0]}'
