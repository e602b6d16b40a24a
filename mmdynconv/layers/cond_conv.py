"""CondConv (Yang et al., NeurIPS 2019), registry type ``'CondConv'``."""
import math

import torch
from mmengine.registry import MODELS
from torch import nn

from .kernel_mixture_base import KernelMixtureConv

__all__ = ['CondConv']


@MODELS.register_module('CondConv')
class CondConv(KernelMixtureConv):
    """Conditionally parameterised convolution: ``y = (Σ_e r_e(x) W_e) * x + Σ_e r_e(x) b_e``.

    Routing ``r(x) = sigmoid(FC(GAP(x)))`` (B, E), one FC ``Ci -> E`` with bias (``routing``); the weights are
    independent sigmoids and do not sum to 1. Expert kernels ``weight`` (E, Co, Ci/groups, kh, kw) and, with bias,
    expert biases ``bias`` (E, Co) are mixed with the same r.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias: as ``nn.Conv2d``.
        num_experts: E (8 in the paper's ResNet-50 / detection experiments).

    Shapes: (B, Ci, H, W) -> (B, Co, Ho, Wo), Ho/Wo as ``nn.Conv2d``.

    Initialisation, as the authors' TensorFlow code (and timm's EfficientNet builder): every expert N(0, 2/fan_out)
    with fan_out = kh·kw·Co/groups (kh·kw·multiplier for a depthwise conv), zero expert biases; ``routing`` a
    Glorot-uniform weight and a zero bias.

    Loading a plain conv ``weight`` W (and ``bias`` b) puts ``2W/E`` (``2b/E``) in every expert, so the mixed kernel
    is ``(2/E)(Σ_e r_e) · W``, and makes the routing antithetic: row ``E/2 + e`` of the routing FC (weight and bias)
    becomes minus row e (and, for odd E, the last row 0). Since sigmoid(z) + sigmoid(−z) = 1, Σ_e r_e = E/2 for every
    input: the converted layer is exactly the plain conv at step 0, while the routing still differs between
    experts and samples, so the identical experts receive different gradients and become different. (Zeroing the
    routing would also give the plain conv, but identical experts with identical routing rows receive identical
    updates and never separate.) Copying W unscaled would start at ≈ (E/2)·W, 4× the plain conv at E = 8.
    """

    NAME = 'CondConv'
    KERNELS_ARG = 'num_experts'
    MIXED_BIAS = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 num_experts=8):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         num_kernels=num_experts)
        self.routing = nn.Linear(in_channels, num_experts)
        self.init_weights()

    def init_weights(self):
        """Experts N(0, 2/fan_out), fan_out = kh·kw·Co/groups, zero expert biases; routing Glorot-uniform, zero bias."""
        fan_out = self.kernel_size[0] * self.kernel_size[1] * self.out_channels // self.groups
        with torch.no_grad():
            self.weight.normal_(0.0, math.sqrt(2.0 / fan_out))
            if self.bias is not None:
                self.bias.zero_()
        nn.init.xavier_uniform_(self.routing.weight)
        nn.init.zeros_(self.routing.bias)

    def zero_logit_gain(self):
        """Σ_e sigmoid(0) = E/2, for the mixed kernel and the mixed bias."""
        return self.num_kernels / 2, self.num_kernels / 2

    def start_at_plain_conv(self):
        """Antithetic routing rows (row E/2 + e = −row e, the last row 0 for odd E): Σ_e r_e(x) = E/2 for every x."""
        half = self.num_kernels // 2
        for p in (self.routing.weight, self.routing.bias):
            p[half:2 * half] = -p[:half]
            p[2 * half:] = 0

    def routing_weights(self, x):
        """r(x): (B, E)."""
        return torch.sigmoid(self.routing(x.mean((2, 3))))

    def forward(self, x):
        self.check_input(x)
        return self.mixture_conv(x, self.routing_weights(x))
