"""CondConv (Yang et al., NeurIPS 2019), registry type ``'CondConv'``."""
import torch
from mmengine.registry import MODELS
from torch import nn

from .kernel_mixture_base import KernelMixtureConv


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

    Loading a plain conv ``weight`` W (and ``bias`` b) puts ``2W/E`` (``2b/E``) in every expert; the mixed kernel is
    then ``(2/E)(Σ_e r_e) · W``: the plain conv, scaled per sample by (2/E) Σ_e r_e ∈ (0, 2), which is 1 when the
    routing logits are 0. (Copying W unscaled would start at ≈ (E/2)·W, 4× the plain conv at E = 8, which a backbone
    with frozen BatchNorms amplifies block after block.)
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
        """Experts as :meth:`reset_kernels`; routing FC with PyTorch's default Linear initialisation."""
        self.reset_kernels()
        self.routing.reset_parameters()

    def zero_logit_gain(self):
        """Σ_e sigmoid(0) = E/2, for the mixed kernel and the mixed bias."""
        return self.num_kernels / 2, self.num_kernels / 2

    def routing_weights(self, x):
        """r(x): (B, E)."""
        return torch.sigmoid(self.routing(x.mean((2, 3))))

    def forward(self, x):
        self.check_input(x)
        return self.mixture_conv(x, self.routing_weights(x))
