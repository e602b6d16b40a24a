"""ODConv's attention module: GAP -> 1×1 conv -> BN -> ReLU -> four heads (Li et al., ICLR 2022)."""
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ['ODConvAttention']


class ODConvAttention(nn.Module):
    """The four attentions of ODConv from the pooled input.

    Trunk: GAP -> ``fc`` (1×1 conv ``Ci -> A``, no bias), A = max(⌊Ci·reduction⌋, min_channels) -> ``bn`` -> ReLU.
    Heads (1×1 convs with bias, all divided by the temperature τ before the nonlinearity):
    ``channel_fc`` input-channel attention sigmoid (B, Ci); ``filter_fc`` output-channel attention sigmoid (B, Co),
    absent (None) for a depthwise conv (Ci = Co = groups); ``spatial_fc`` spatial attention sigmoid (B, kh, kw),
    absent for 1×1 kernels; ``kernel_fc`` kernel attention softmax over the n kernels (B, n), absent for n = 1.
    Parameter names are those of the authors' ``Attention`` module.

    BatchNorm over B pooled vectors has no batch statistics for B = 1: a training-mode forward with one sample
    normalises with (and does not update) the running statistics instead of failing (SyncBatchNorm is left alone).
    """

    def __init__(self, in_channels, out_channels, kernel_size, groups, kernel_num, reduction, min_channels):
        super().__init__()
        width = max(int(in_channels * reduction), min_channels)
        self.kernel_size = tuple(kernel_size)
        self.temperature = 1.0
        self.fc = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.channel_fc = nn.Conv2d(width, in_channels, 1)
        depthwise = in_channels == groups == out_channels
        self.filter_fc = None if depthwise else nn.Conv2d(width, out_channels, 1)
        k2 = self.kernel_size[0] * self.kernel_size[1]
        self.spatial_fc = nn.Conv2d(width, k2, 1) if k2 > 1 else None
        self.kernel_fc = nn.Conv2d(width, kernel_num, 1) if kernel_num > 1 else None
        self.init_weights()

    def init_weights(self):
        """Kaiming-normal (fan_out, ReLU) 1×1 convs with zero bias, BN weight 1 and bias 0 (as the authors)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.bn.reset_parameters()

    def zero_sigmoid_heads(self):
        """Zero weight and bias of ``channel_fc``, ``filter_fc`` and ``spatial_fc``: their logits become 0 for every
        input (``kernel_fc`` is left alone)."""
        with torch.no_grad():
            for fc in (self.channel_fc, self.filter_fc, self.spatial_fc):
                if fc is not None:
                    fc.weight.zero_()
                    fc.bias.zero_()

    def _normalise(self, z):
        n = self.bn
        if self.training and z.shape[0] == 1 and not isinstance(n, nn.SyncBatchNorm):
            return F.batch_norm(z, n.running_mean, n.running_var, n.weight, n.bias, False, 0.0, n.eps)
        return n(z)

    def forward(self, x):
        """x (B, Ci, H, W) -> (in_att (B, Ci), out_att (B, Co) or None, spatial_att (B, kh, kw) or None,
        kernel_att (B, n) or None)."""
        b = x.shape[0]
        z = F.relu(self._normalise(self.fc(x.mean((2, 3), keepdim=True))))
        t = self.temperature

        def head(fc):
            return fc(z).view(b, fc.out_channels) / t

        in_att = torch.sigmoid(head(self.channel_fc))
        out_att = torch.sigmoid(head(self.filter_fc)) if self.filter_fc is not None else None
        spatial = torch.sigmoid(head(self.spatial_fc)).view(b, *self.kernel_size) if self.spatial_fc is not None \
            else None
        kernel = torch.softmax(head(self.kernel_fc), dim=1) if self.kernel_fc is not None else None
        return in_att, out_att, spatial, kernel
