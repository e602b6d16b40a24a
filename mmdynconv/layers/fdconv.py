"""FDConv: Frequency Dynamic Convolution (Chen et al., CVPR 2025; docs/fdconv.md), the conv type ``'FDConv'``."""
import contextlib

import torch
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch import nn

from ..ops.arguments import check_choice, check_feature_map, check_int, check_optional_bool, check_pair
from ..ops.backend import BACKENDS
from ..ops.fdconv import fdconv_dynamic_conv
from ..ops.fdconv_fbm import MASK_MODES
from ..ops.fdconv_inputs import FDConvAttention, FDConvWeight
from ..ops.fdconv_oracle import fdconv_oracle
from ..ops.fdconv_spectrum import (
    BAND_ORDERS,
    fourier_band_index,
    spectrum_scale,
    spectrum_to_weight,
    weight_to_spectrum,
)
from .fdconv_inference import inference_conv
from .fdconv_release import convert_release_layer, is_release_layout
from .frequency_band_modulation import FrequencyBandModulation
from .kernel_spatial_modulation import KernelSpatialModulationGlobal, KernelSpatialModulationLocal

__all__ = ['MODES', 'is_dynamic', 'FDConv', 'fdconv_mode']

MODES = ('default', 'inference', 'export')


def _int(name, value, minimum):
    return check_int('FDConv', name, value, minimum)


def _pair(name, value, minimum):
    return check_pair('FDConv', name, value, minimum)


def is_dynamic(in_channels, out_channels, kernel_size, dynamic_min_channels=16, dynamic_kernel_sizes=(1, 3)):
    """The published fallback rule: an FDConv is dynamic only when min(Ci, Co) > ``dynamic_min_channels`` and
    k ∈ ``dynamic_kernel_sizes``; otherwise it is a plain conv."""
    return min(in_channels, out_channels) > dynamic_min_channels and kernel_size in tuple(dynamic_kernel_sizes)


@MODELS.register_module('FDConv')
class FDConv(nn.Module):
    """Frequency dynamic convolution with the conv-layer signature of ``mmcv.cnn.build_conv_layer``.

    (B, Ci, H, W) -> (B, Co, Ho, Wo), Ho/Wo as for ``nn.Conv2d``. The kernel of sample b is
    ``W_b = α_in ⊙ α_out ⊙ α_pos ⊙ α_local ⊙ Σ_j π_bj W_j`` where the W_j are the disjoint frequency bands of one
    Fourier-parameterised weight (FDW, parameter ``spectrum``), the attentions come from KSM (``ksm_global``,
    ``ksm_local``), and the input is first band-modulated by FBM (``fbm``) on 3×3 layers.

    The layer is dynamic only when ``min(Ci, Co) > dynamic_min_channels`` and ``k in dynamic_kernel_sizes``
    (published rule: 16 and (1, 3)); otherwise it is a plain conv (``dynamic`` is False) with the parameters
    ``weight`` (Co, Ci/groups, k, k) and ``bias`` of ``nn.Conv2d``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias: as ``nn.Conv2d``
            (square kernels; int or pair for stride/padding/dilation). A dynamic layer needs ``groups=1``
            (grouped/depthwise FDConv is not supported; such layers raise ``ValueError``).
        kernel_num: n, the number of frequency bands / candidate kernels (64 published).
        use_fbm: apply FBM to the input; None (default) means "on 3×3 layers" (the published placement).
        dynamic_min_channels, dynamic_kernel_sizes: the fallback rule above.
        reduction, min_attention_channels: KSM global trunk width max(⌊Ci/reduction⌋, min_attention_channels).
        local_kernel_size: κ of the KSM local 1-D conv; None = the release's rule (3 for Ci < 64, 5 below 1024,
            7 above).
        band_order: how coefficients are sorted into bands: ``'release'`` (default; the authors' order, needed to
            reproduce their checkpoints) or ``'exact'`` (platform-independent exact integer order), see
            :func:`mmdynconv.ops.fourier_band_index`.
        fbm_mask_mode: FBM's band masks: ``'release'`` (default; the authors' size-dependent masks) or
            ``'symmetric'`` (square masks at every size), see :mod:`mmdynconv.ops.fdconv_fbm`.
        backend: None (automatic: Triton on CUDA, see :mod:`mmdynconv.ops.backend`), ``'reference'`` or
            ``'triton'``: the backend of :func:`mmdynconv.ops.fdconv_dynamic_conv`.
        fold_channel_attention: None (choose per call by cost), True (fold α_in/α_out into W_b) or False (apply
            them to the activations).

    Loading a plain conv state dict (``weight`` of shape (Co, Ci, k, k)) into a dynamic layer converts it to
    ``spectrum`` and calls :meth:`start_at_plain_conv` (the same happens for a ``spectrum`` loaded without any
    ``ksm_global.``/``ksm_local.``/``fbm.`` key, what ``tools/convert_fdconv_checkpoint.py`` writes): every
    attention is then exactly 1 and π exactly 1/n, so the converted layer is the plain conv at step 0 (up to the
    fp32 rounding of the Fourier round trip: the spectrum and the kernel are built in fp32). Loading a ``spectrum``
    into a fallback layer converts it back.
    A state dict in the authors' layout (``dft_weight``, ``KSM_Global.*``, ``KSM_Local.*``, ``FBM.*``) is converted
    while it loads (:mod:`mmdynconv.layers.fdconv_release`); it needs ``band_order='release'``.

    How a dynamic layer computes its forward is the attribute :attr:`mode` (one of :data:`MODES`; set it directly,
    with :meth:`set_mode` or for a whole model with :func:`fdconv_mode`; it is not part of the state dict):

    - ``'default'``: the lean op :func:`mmdynconv.ops.fdconv_dynamic_conv` and the lean FBM (training and
      inference, every backend);
    - ``'inference'``: in eval mode with gradients disabled, the cached candidate kernels mixed per sample
      (:mod:`mmdynconv.layers.fdconv_inference`); otherwise as ``'default'``;
    - ``'export'``: the pure-PyTorch formulation, :func:`mmdynconv.ops.fdconv_oracle` and the masked-FFT FBM oracle
      (what ONNX export traces and the tests and benchmarks compare against).

    All three give the same numbers up to fp32 rounding; a fallback (plain conv) layer ignores the mode.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 kernel_num=64, use_fbm=None, dynamic_min_channels=16, dynamic_kernel_sizes=(1, 3), reduction=16,
                 min_attention_channels=16, local_kernel_size=None, fold_channel_attention=None, band_order='release',
                 fbm_mask_mode='release', backend=None):
        super().__init__()
        self.in_channels = _int('in_channels', in_channels, 1)
        self.out_channels = _int('out_channels', out_channels, 1)
        ks = _pair('kernel_size', kernel_size, 1)
        if ks[0] != ks[1]:
            raise ValueError(f'FDConv: kernel_size must be square, got {kernel_size!r}')
        self.kernel_size = ks[0]
        self.stride = _pair('stride', stride, 1)
        self.padding = _pair('padding', padding, 0)
        self.dilation = _pair('dilation', dilation, 1)
        self.groups = _int('groups', groups, 1)
        if not isinstance(bias, bool):
            raise TypeError(f'FDConv: bias must be a bool, got {bias!r}')
        self.kernel_num = _int('kernel_num', kernel_num, 1)
        check_optional_bool('FDConv', 'use_fbm', use_fbm)
        _int('dynamic_min_channels', dynamic_min_channels, 0)
        if (not isinstance(dynamic_kernel_sizes, (tuple, list))
                or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in dynamic_kernel_sizes)):
            raise TypeError(f'FDConv: dynamic_kernel_sizes must be a tuple of ints >= 1, '
                            f'got {dynamic_kernel_sizes!r}')
        self.fold_channel_attention = check_optional_bool('FDConv', 'fold_channel_attention', fold_channel_attention)
        self.band_order = check_choice('FDConv', 'band_order', band_order, BAND_ORDERS)
        check_choice('FDConv', 'fbm_mask_mode', fbm_mask_mode, MASK_MODES)
        if backend is not None:
            check_choice('FDConv', 'backend', backend, BACKENDS)
        self.backend = backend
        self.mode = 'default'
        ci, co, k = self.in_channels, self.out_channels, self.kernel_size
        self.dynamic = is_dynamic(ci, co, k, dynamic_min_channels, dynamic_kernel_sizes)
        if ci % self.groups or co % self.groups:
            raise ValueError(f'FDConv: in_channels ({ci}) and out_channels ({co}) must be divisible by groups '
                             f'({self.groups})')

        if not self.dynamic:
            self.use_fbm = False
            self.weight = nn.Parameter(torch.empty(co, ci // self.groups, k, k))
            self.bias = nn.Parameter(torch.empty(co)) if bias else None
            self.init_weights()
            return
        if self.groups != 1:
            raise ValueError(f'FDConv: groups must be 1 for a dynamic layer, got groups={self.groups} '
                             f'(grouped and depthwise FDConv are not supported)')
        _int('reduction', reduction, 1)
        _int('min_attention_channels', min_attention_channels, 1)
        if local_kernel_size is not None and (_int('local_kernel_size', local_kernel_size, 1) % 2 == 0):
            raise ValueError(f'FDConv: local_kernel_size must be odd, got {local_kernel_size}')
        self.use_fbm = k == 3 if use_fbm is None else use_fbm
        self.scale = spectrum_scale(ci, co) * self.kernel_num
        band_index = fourier_band_index(co * k, ci * k, self.kernel_num, band_order)
        self.register_buffer('band_index', band_index, persistent=False)
        self.spectrum = nn.Parameter(torch.empty(co * k, ci * k // 2 + 1, 2))
        self.bias = nn.Parameter(torch.empty(co)) if bias else None
        self.ksm_global = KernelSpatialModulationGlobal(ci, co, k, self.kernel_num, reduction, min_attention_channels)
        self.ksm_local = KernelSpatialModulationLocal(ci, co, k, local_kernel_size)
        self.fbm = FrequencyBandModulation(ci, mask_mode=fbm_mask_mode) if self.use_fbm else None
        self.init_weights()

    def init_weights(self):
        """Kaiming-normal (fan_out, ReLU) kernel as in OpenMMLab backbones, zero bias, identity modulation."""
        weight = torch.empty(self.out_channels, self.in_channels // self.groups, self.kernel_size, self.kernel_size)
        nn.init.kaiming_normal_(weight, mode='fan_out', nonlinearity='relu')
        with torch.no_grad():
            if self.dynamic:
                self.spectrum.copy_(weight_to_spectrum(weight))
                self.ksm_global.reset_parameters()
                self.ksm_local.reset_parameters()
                if self.fbm is not None:
                    self.fbm.reset_parameters()
            else:
                self.weight.copy_(weight)
            if self.bias is not None:
                self.bias.zero_()

    def start_at_plain_conv(self):
        """Zero every logit-producing parameter of KSM and FBM (the four global heads, the local 1-D conv, the FBM
        conv): all attentions become exactly 1 (π exactly 1/n) for every input, in train and eval mode. At
        initialisation the heads and the local conv are ~1e-6 instead (the release's values), which moves a converted
        layer away from the plain conv by about that much."""
        if not self.dynamic:
            return
        with torch.no_grad():
            g = self.ksm_global
            for head in (g.in_head, g.out_head, g.pos_head, g.kernel_head):
                if head is not None:
                    head.weight.zero_()
                    head.bias.zero_()
            self.ksm_local.weight.zero_()
            if self.fbm is not None:
                self.fbm.reset_parameters()

    def modulation_parameters(self):
        """Parameters of KSM and FBM (what stays trainable in a frozen stage); empty for a fallback layer."""
        if not self.dynamic:
            return iter(())
        modules = [self.ksm_global, self.ksm_local] + ([self.fbm] if self.fbm is not None else [])
        return (p for m in modules for p in m.parameters())

    def static_weight(self):
        """(Co, Ci/groups, k, k) kernel the parameters encode: W_b with every attention exactly 1 and π_j = 1/n."""
        if not self.dynamic:
            return self.weight
        return spectrum_to_weight(self.spectrum, self.out_channels, self.in_channels, self.kernel_size)

    def _check_input(self, x):
        check_feature_map('FDConv', 'input', x, self.in_channels)

    def _require_dynamic(self, what):
        if not self.dynamic:
            raise RuntimeError(f'FDConv: {what} exists only for a dynamic layer; this one is a plain conv '
                               f'(in_channels={self.in_channels}, kernel_size={self.kernel_size}: see '
                               f'dynamic_min_channels / dynamic_kernel_sizes)')

    def attentions(self, x):
        """The per-sample :class:`~mmdynconv.ops.FDConvAttention` of KSM from the (B, Ci, H, W) input (the op's
        ``att``; FBM, when the layer has it, runs on the input after this, in :meth:`forward`)."""
        self._require_dynamic('attentions()')
        g = x.mean((2, 3))
        in_att, out_att, pos_att, kernel_att = self.ksm_global(g)
        return FDConvAttention(kernel_att=kernel_att, local_feat=self.ksm_local(g), pos_att=pos_att, in_att=in_att,
                               out_att=out_att)

    def op_weight(self):
        """The layer's static :class:`~mmdynconv.ops.FDConvWeight` (the op's ``weight``; the KSM local conv weight
        included)."""
        self._require_dynamic('op_weight()')
        return FDConvWeight(self.spectrum, self.band_index, self.scale, self.ksm_local.weight)

    @property
    def mode(self):
        """``'default'``, ``'inference'`` or ``'export'``: how the forward is computed (see the class docstring)."""
        return self._mode

    @mode.setter
    def mode(self, mode):
        self._mode = check_choice('FDConv', 'mode', mode, MODES)
        if mode != 'inference':
            self.__dict__.pop('_inference_candidates', None)   # inference mode's cache, rebuilt when needed

    def set_mode(self, mode):
        """Set :attr:`mode` (one of :data:`MODES`; ``ValueError`` otherwise); returns the layer."""
        self.mode = mode
        return self

    def forward(self, x):
        """(B, Ci, H, W) -> (B, Co, Ho, Wo), computed as :attr:`mode` says."""
        self._check_input(x)
        if not self.dynamic:
            return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        att = self.attentions(x)
        if self._mode == 'export':
            if self.fbm is not None:
                x = self.fbm.forward_oracle(x)
            return fdconv_oracle(x, self.op_weight(), att, bias=self.bias, stride=self.stride,
                                 padding=self.padding, dilation=self.dilation)
        if self.fbm is not None:
            x = self.fbm(x)
        if self._mode == 'inference' and not self.training and not torch.is_grad_enabled():
            return inference_conv(self, x, att)
        return fdconv_dynamic_conv(x, self.op_weight(), att, bias=self.bias, stride=self.stride,
                                   padding=self.padding, dilation=self.dilation, fold=self.fold_channel_attention,
                                   backend=self.backend)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """Convert a release-layout layer, a plain conv ``weight`` into ``spectrum`` (dynamic layer, then
        :meth:`start_at_plain_conv`), or a ``spectrum`` into ``weight`` (fallback layer)."""
        weight_key, spectrum_key = prefix + 'weight', prefix + 'spectrum'
        co, ci, k = self.out_channels, self.in_channels, self.kernel_size
        if self.dynamic and is_release_layout(state_dict, prefix):
            if self.band_order != 'release':
                error_msgs.append(f"{prefix}dft_weight: a release FDConv checkpoint needs band_order='release', "
                                  f'this layer has {self.band_order!r}')
            num_maps = len(self.fbm.cutoffs) if self.fbm is not None else 0
            error_msgs.extend(convert_release_layer(state_dict, prefix, num_maps))
        elif self.dynamic and weight_key in state_dict and spectrum_key not in state_dict:
            weight = state_dict.pop(weight_key)
            if tuple(weight.shape) != (co, ci, k, k):
                error_msgs.append(f'size mismatch for {weight_key}: converting a conv weight of shape '
                                  f'{tuple(weight.shape)} into FDConv needs ({co}, {ci}, {k}, {k})')
            else:
                state_dict[spectrum_key] = weight_to_spectrum(weight)
                self.start_at_plain_conv()
        elif self.dynamic and spectrum_key in state_dict and not any(
                key.startswith(tuple(prefix + m for m in ('ksm_global.', 'ksm_local.', 'fbm.'))) for key in state_dict):
            self.start_at_plain_conv()   # a converted plain kernel without modulation parameters
        elif not self.dynamic and spectrum_key in state_dict and weight_key not in state_dict:
            spectrum = state_dict.pop(spectrum_key)
            expected = (co * k, ci * k // 2 + 1, 2)
            if self.groups != 1 or tuple(spectrum.shape) != expected:
                error_msgs.append(f'size mismatch for {spectrum_key}: an FDConv spectrum of shape '
                                  f'{tuple(spectrum.shape)} cannot become this plain layer\'s weight '
                                  f'(needs {expected} and groups=1)')
            else:
                state_dict[weight_key] = spectrum_to_weight(spectrum, co, ci, k)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def extra_repr(self):
        s = (f'{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, '
             f'padding={self.padding}, dilation={self.dilation}, bias={self.bias is not None}')
        if not self.dynamic:
            return s + f', groups={self.groups}, dynamic=False'
        return s + f', kernel_num={self.kernel_num}, fbm={self.use_fbm}, band_order={self.band_order!r}'



@contextlib.contextmanager
def fdconv_mode(model, mode):
    """Within the block every FDConv layer of ``model`` (a module, itself included) has :attr:`FDConv.mode` ``mode``;
    each layer's previous mode is restored on exit, also after an exception."""
    check_choice('fdconv_mode', 'mode', mode, MODES)
    layers = [(m, m.mode) for m in model.modules() if isinstance(m, FDConv)]
    for m, _ in layers:
        m.mode = mode
    try:
        yield model
    finally:
        for m, previous in layers:
            m.mode = previous
