"""Shared base of the kernel-mixture conv layers CondConv, DY-Conv and ODConv: arguments, expert kernels, plain
checkpoint loading and the call into :func:`mmdynconv.ops.kernel_mixture_conv`."""
import torch
from torch import nn

from ..ops.arguments import check_conv_args, check_feature_map, check_int
from ..ops.kernel_mixture import kernel_mixture_conv

__all__ = ['KernelMixtureConv']


class KernelMixtureConv(nn.Module):
    """A conv whose kernel is, per sample, a mixture of ``num_kernels`` expert kernels of shape (Co, Ci/groups, kh, kw).

    Takes what ``mmcv.cnn.build_conv_layer`` passes (``in_channels, out_channels, kernel_size, stride, padding,
    dilation, groups, bias``, as ``nn.Conv2d``; kernel_size, stride, padding, dilation ints or pairs). Subclasses
    compute the attentions and call :meth:`mixture_conv`.

    Parameters: ``weight`` (E, Co, Ci/groups, kh, kw); ``bias`` (E, Co) when the layer mixes expert biases
    (``MIXED_BIAS``), else (Co,); None without bias.

    Plain checkpoints: a state dict holding a plain conv's ``weight`` W (Co, Ci/groups, kh, kw) (and ``bias`` b (Co,))
    initialises every expert with ``W / g`` (and ``b / g``), where g = :meth:`zero_logit_gain` is the factor the
    layer's attentions apply to a kernel when all their logits are 0, and then calls
    :meth:`start_at_plain_conv`, which sets the attention parameters so that the converted layer computes exactly the
    plain conv, for every input, in training and in eval mode: step 0 of fine-tuning is the pretrained network.
    Attention parameters present in the same state dict load afterwards and take precedence.
    """

    NAME = 'KernelMixtureConv'
    KERNELS_ARG = 'num_kernels'   # the subclass's name for E, used in error messages
    MIXED_BIAS = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 num_kernels=4):
        super().__init__()
        name = self.NAME
        (self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding, self.dilation,
         self.groups) = check_conv_args(name, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                                        bias)
        self.num_kernels = check_int(name, self.KERNELS_ARG, num_kernels, 1)
        self.weight = nn.Parameter(torch.empty(num_kernels, out_channels, in_channels // groups, *self.kernel_size))
        if bias:
            shape = (num_kernels, out_channels) if self.MIXED_BIAS else (out_channels,)
            self.bias = nn.Parameter(torch.empty(shape))
        else:
            self.register_parameter('bias', None)

    def reset_kernels(self):
        """Every expert Kaiming-normal (fan_out, ReLU) as in OpenMMLab backbones and ODConv; zero bias."""
        with torch.no_grad():
            for expert in self.weight:
                nn.init.kaiming_normal_(expert, mode='fan_out', nonlinearity='relu')
            if self.bias is not None:
                self.bias.zero_()

    def check_input(self, x):
        check_feature_map(self.NAME, 'input', x, self.in_channels)

    def mixture_conv(self, x, routing, spatial_att=None, in_att=None, out_att=None):
        """The conv of x with the per-sample kernels of routing (B, E) and the optional attentions."""
        bias = self.bias
        if bias is not None and self.MIXED_BIAS:
            bias = routing.to(bias.dtype) @ bias                                  # (B, Co)
        return kernel_mixture_conv(x, self.weight, routing, spatial_att, in_att, out_att, bias, self.stride,
                                   self.padding, self.dilation, self.groups)

    def zero_logit_gain(self):
        """(weight gain, bias gain): what the attentions multiply the mixed kernel and bias by at zero logits."""
        return 1.0, 1.0

    def start_at_plain_conv(self):
        """Called after a plain conv weight was loaded into the experts: set the attention parameters so that the
        layer computes the plain conv for every input (a layer whose attentions sum to 1 has nothing to do)."""

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """A plain conv's ``weight`` (Co, Ci/groups, kh, kw) / ``bias`` (Co,) divided by :meth:`zero_logit_gain`
        becomes every expert's."""
        weight_gain, bias_gain = self.zero_logit_gain()
        plain = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        key = prefix + 'weight'
        if key in state_dict and state_dict[key].dim() == 4:
            weight = state_dict[key]
            if tuple(weight.shape) != plain:
                error_msgs.append(f'size mismatch for {key}: a plain conv weight of shape {tuple(weight.shape)} '
                                  f'cannot initialise {self.NAME} experts of shape {plain}')
                state_dict.pop(key)
            else:
                state_dict[key] = (weight / weight_gain).unsqueeze(0).expand(self.num_kernels, *plain).clone()
                with torch.no_grad():
                    self.start_at_plain_conv()
        key = prefix + 'bias'
        if self.MIXED_BIAS and self.bias is not None and key in state_dict and state_dict[key].dim() == 1:
            state_dict[key] = (state_dict[key] / bias_gain).unsqueeze(0).expand(self.num_kernels, -1).clone()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def extra_repr(self):
        return (f'{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, '
                f'padding={self.padding}, dilation={self.dilation}, groups={self.groups}, '
                f'bias={self.bias is not None}, num_kernels={self.num_kernels}')
