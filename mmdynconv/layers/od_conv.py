"""Omni-dimensional dynamic convolution (Li et al., ICLR 2022), registry type ``'ODConv'``."""
from mmengine.registry import MODELS

from ..ops.arguments import check_int, check_positive
from .kernel_mixture_base import KernelMixtureConv
from .od_conv_attention import ODConvAttention

__all__ = ['ODConv']


@MODELS.register_module('ODConv')
class ODConv(KernelMixtureConv):
    """``W_b = α_out ⊙ α_in ⊙ α_s ⊙ Σ_n α_w,n W_n``: n kernels, attentions along the kernel-number (α_w, softmax),
    spatial (α_s, k×k), input-channel (α_in) and output-channel (α_out) dimensions (sigmoids), from
    :class:`~mmdynconv.layers.od_conv_attention.ODConvAttention` (``attention``).

    Applying α_in to the input and α_out to the output, as the authors do, is the same function; here all four are
    folded into the per-sample kernel of :func:`mmdynconv.ops.kernel_mixture_conv`. Parameter names (``weight``
    (n, Co, Ci/groups, kh, kw), ``attention.{fc, bn, channel_fc, filter_fc, spatial_fc, kernel_fc}``) are the
    authors', so their ODConv state dicts load. The bias (off by default, as the authors have none) is static (Co,).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias: as ``nn.Conv2d``.
        kernel_num: n (1 or 4 in the paper: "ODConv (1×)" / "(4×)").
        reduction: attention trunk ratio (1/16 in the paper). min_channels: minimum trunk width (16 in the paper).
        temperature: τ > 0 dividing every head's logits (the authors anneal it from 30 to 1 on ImageNet and use 1 for
            detection; :class:`~mmdynconv.layers.TemperatureAnnealHook` anneals it; ``layer.temperature`` sets it).

    Shapes: (B, Ci, H, W) -> (B, Co, Ho, Wo), Ho/Wo as ``nn.Conv2d``.

    Loading a plain conv ``weight`` W puts ``W / g`` in every kernel, g = 1/2 per sigmoid attention the layer has
    (α_in always, α_out unless depthwise, α_s unless 1×1: g = 1/8 for a 3×3 conv), and zeroes the weights and biases
    of the sigmoid heads (``channel_fc``, ``filter_fc``, ``spatial_fc``): their logits are then 0 for every input,
    whatever the trunk (its BatchNorm in train or eval mode) and τ, so, as α_w sums to 1 over identical kernels, the
    converted layer is exactly the plain conv at step 0. ``kernel_fc`` keeps its initialisation: it does not change
    the output at step 0, and zeroing it would give every kernel the same gradient forever (the kernels would never
    separate). The static bias loads as is.
    """

    NAME = 'ODConv'
    KERNELS_ARG = 'kernel_num'
    MIXED_BIAS = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=False,
                 kernel_num=4, reduction=0.0625, min_channels=16, temperature=1.0):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         num_kernels=kernel_num)
        reduction = check_positive(self.NAME, 'reduction', reduction)
        min_channels = check_int(self.NAME, 'min_channels', min_channels, 1)
        self.attention = ODConvAttention(in_channels, out_channels, self.kernel_size, groups, kernel_num, reduction,
                                         min_channels)
        self.temperature = check_positive(self.NAME, 'temperature', temperature)
        self.init_weights()

    @property
    def temperature(self):
        return self.attention.temperature

    @temperature.setter
    def temperature(self, value):
        self.attention.temperature = value

    def zero_logit_gain(self):
        """0.5 for each sigmoid attention present (α_in, α_out, α_s); the static bias is not attended."""
        sigmoids = 1 + (self.attention.filter_fc is not None) + (self.attention.spatial_fc is not None)
        return 0.5 ** sigmoids, 1.0

    def init_weights(self):
        self.reset_kernels()
        self.attention.init_weights()

    def start_at_plain_conv(self):
        """Zero the sigmoid heads, so α_in = α_out = α_s = 1/2 exactly (the gain that loading divided by)."""
        self.attention.zero_sigmoid_heads()

    def forward(self, x):
        self.check_input(x)
        in_att, out_att, spatial, kernel = self.attention(x)
        if kernel is None:
            kernel = in_att.new_ones(x.shape[0], 1)
        return self.mixture_conv(x, kernel, spatial, in_att, out_att)

    def extra_repr(self):
        return f'{super().extra_repr()}, temperature={self.temperature}'
