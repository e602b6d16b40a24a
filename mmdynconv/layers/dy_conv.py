"""Dynamic Convolution (Chen et al., CVPR 2020, "Attention over Convolution Kernels"), registry type ``'DYConv'``."""
from collections import OrderedDict

import torch
from mmengine.registry import MODELS
from torch import nn

from ..ops.arguments import check_int, check_positive
from .kernel_mixture_base import KernelMixtureConv

__all__ = ['DYConv']


@MODELS.register_module('DYConv')
class DYConv(KernelMixtureConv):
    """K kernels mixed by a softmax attention: ``y = (Σ_k π_k(x) W_k) * x + Σ_k π_k(x) b_k``, ``Σ_k π_k = 1``.

    Attention ``π(x) = softmax(FC2(ReLU(FC1(GAP(x)))) / τ)``: ``attention.fc1`` ``Ci -> max(⌊Ci/reduction⌋, 1)``
    and ``attention.fc2`` ``-> K``, both with bias. The temperature τ (attribute ``temperature``) is annealed in
    the paper from 30 to 1 over the first epochs; :class:`~mmdynconv.layers.TemperatureAnnealHook` does that in an
    mmengine Runner, and any code may set ``layer.temperature``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias: as ``nn.Conv2d``.
        num_kernels: K (4 in the paper). reduction: FC1 squeeze ratio (4 in the paper). temperature: τ > 0.

    Shapes: (B, Ci, H, W) -> (B, Co, Ho, Wo), Ho/Wo as ``nn.Conv2d``.

    Loading a plain conv ``weight`` (and ``bias``) puts it in every kernel; since π sums to 1 the mixed kernel and
    bias are then exactly the plain conv's, for every input and temperature.
    """

    NAME = 'DYConv'
    MIXED_BIAS = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 num_kernels=4, reduction=4, temperature=1.0):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         num_kernels=num_kernels)
        hidden = max(in_channels // check_int(self.NAME, 'reduction', reduction, 1), 1)
        self.temperature = check_positive(self.NAME, 'temperature', temperature)
        self.attention = nn.Sequential(OrderedDict(
            fc1=nn.Linear(in_channels, hidden), relu=nn.ReLU(inplace=True), fc2=nn.Linear(hidden, num_kernels)))
        self.init_weights()

    def init_weights(self):
        """Kernels as :meth:`reset_kernels`; attention FCs with PyTorch's default Linear initialisation."""
        self.reset_kernels()
        self.attention.fc1.reset_parameters()
        self.attention.fc2.reset_parameters()

    def kernel_attention(self, x):
        """π(x): (B, K), rows summing to 1."""
        return torch.softmax(self.attention(x.mean((2, 3))) / self.temperature, dim=1)

    def forward(self, x):
        self.check_input(x)
        return self.mixture_conv(x, self.kernel_attention(x))

    def extra_repr(self):
        return f'{super().extra_repr()}, temperature={self.temperature}'
