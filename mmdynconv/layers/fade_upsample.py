"""FADE upsampler (Lu et al., ECCV 2022), registry type ``'fade'``; definition in docs/fade.md."""
import torch
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch import nn

from ..ops.arguments import check_guided_input, check_int
from ..ops.carafe import carafe
from ..ops.per_sample_conv import conv_dtype

__all__ = ['NAME', 'RELEASE_NAMES', 'convert_release_state_dict', 'add_nearest', 'FADE']

NAME = 'fade'

# Parameter names of the authors' modules (github.com/poppinace/fade) -> ours. FADE_L2H.py (and FADE-Lite, the
# gate-less SemiShiftUp), then FADE_H2L.py (the ECCV version, whose semi-shift conv is a bare weight and bias).
RELEASE_NAMES = {
    'gate_generator.conv.weight': 'gate.weight', 'gate_generator.conv.bias': 'gate.bias',
    'ker_generator.compressor_en.weight': 'encoder_compressor.weight',
    'ker_generator.compressor_en.bias': 'encoder_compressor.bias',
    'ker_generator.compressor_de.weight': 'decoder_compressor.weight',
    'ker_generator.content_encoder.weight': 'kernel_encoder.weight',
    'ker_generator.content_encoder.bias': 'kernel_encoder.bias',
    'kernel_generator.conv1_en.weight': 'encoder_compressor.weight',
    'kernel_generator.conv1_en.bias': 'encoder_compressor.bias',
    'kernel_generator.conv1_de.weight': 'decoder_compressor.weight',
    'kernel_generator.conv2_kernels': 'kernel_encoder.weight',
    'kernel_generator.conv2_bias': 'kernel_encoder.bias',
}


def convert_release_state_dict(state_dict):
    """A state dict of the authors' ``FADE`` / ``FADELite`` / ``SemiShiftUp`` (either file) with our parameter
    names; the tensors are the same. ``KeyError`` naming the keys it does not know."""
    unknown = sorted(k for k in state_dict if k not in RELEASE_NAMES)
    if unknown:
        raise KeyError(f'{NAME}: not a parameter of the released FADE modules: {unknown}')
    return {RELEASE_NAMES[k]: v for k, v in state_dict.items()}


def add_nearest(high, low, s):
    """``high`` (B, K, S·H, S·W) plus ``low`` (B, K, H, W) upsampled ×S by nearest neighbour, without
    materialising the upsampled ``low`` (a broadcast over the S×S sub-pixels)."""
    h, w = low.shape[2:]
    out = high.unflatten(3, (w, s)).unflatten(2, (h, s)) + low[:, :, :, None, :, None]
    return out.flatten(4, 5).flatten(2, 3)


@MODELS.register_module(NAME)
class FADE(nn.Module):
    """Guided ×S upsampling that fuses the decoder feature x with the encoder feature (the guidance).

    - Kernels: both features are compressed by 1×1 convs (``encoder_compressor`` with bias, ``decoder_compressor``
      without) to E channels; one shared conv ``kernel_encoder`` (E -> k_up², kernel ``encoder_kernel``) runs on
      each, at its own resolution (the semi-shift convolution); the decoder's result is upsampled ×S by nearest
      neighbour and added (``kernel_encoder``'s bias enters both terms, as in the release); softmax over the k_up²
      taps gives one kernel per output pixel, (B, k_up², S·H, S·W).
    - Reassembly: CARAFE's content-aware reassembly of x with these kernels (:func:`mmdynconv.ops.carafe`, no
      unfold), ``up``.
    - Gate (``gating=True``): g = sigmoid(``gate``(x)), a 1×1 conv C -> 1, upsampled ×S by nearest neighbour;
      ``out = g · guidance + (1 − g) · up``, which needs C_g = C.
    - FADE-Lite (``lite=True``): E = k_up² and ``kernel_encoder`` is depthwise (groups k_up²).

    Initialisation as the release: every conv Xavier-uniform, zero biases. ``convert_release_state_dict`` renames
    the authors' parameters to ours.

    Guidance protocol (``takes_guidance = True``): ``forward(x, guidance)``; ``UpsamplerFPN`` passes the lateral of the
    next finer level as the guidance.

    Args:
        channels: C of x. scale_factor: integer S >= 2. up_kernel: odd k_up (5).
        guidance_channels: C_g of the guidance; None: C. compressed_channels: E (64; None: 64, or k_up² with
            ``lite``). encoder_kernel: odd kernel size of ``kernel_encoder`` (3). gating: mix the guidance in by the
            gate (True; False is the release's ``SemiShiftUp``). lite: FADE-Lite (False).

    Shapes: x (B, C, H, W), guidance (B, C_g, S·H, S·W) -> (B, C, S·H, S·W).
    """

    takes_guidance = True

    def __init__(self, channels, scale_factor=2, up_kernel=5, guidance_channels=None, compressed_channels=None,
                 encoder_kernel=3, gating=True, lite=False):
        super().__init__()
        if isinstance(scale_factor, float) and scale_factor.is_integer():
            scale_factor = int(scale_factor)
        guidance_channels = channels if guidance_channels is None else guidance_channels
        check_int(NAME, 'channels', channels, 1)
        check_int(NAME, 'scale_factor', scale_factor, 2)
        check_int(NAME, 'guidance_channels', guidance_channels, 1)
        for arg, value in (('up_kernel', up_kernel), ('encoder_kernel', encoder_kernel)):
            if check_int(NAME, arg, value, 1) % 2 == 0:
                raise ValueError(f'{NAME}: {arg} must be odd, got {value}')
        for arg, value in (('gating', gating), ('lite', lite)):
            if not isinstance(value, bool):
                raise TypeError(f'{NAME}: {arg} must be True or False, got {value!r}')
        taps = up_kernel ** 2
        if lite:
            if compressed_channels not in (None, taps):
                raise ValueError(f'{NAME}: with lite=True, compressed_channels is up_kernel² = {taps}; got '
                                 f'{compressed_channels!r}')
            compressed_channels = taps
        elif compressed_channels is None:
            compressed_channels = 64
        check_int(NAME, 'compressed_channels', compressed_channels, 1)
        if gating and guidance_channels != channels:
            raise ValueError(f'{NAME}: with gating=True, guidance_channels ({guidance_channels}) must equal channels '
                             f'({channels}): the gate mixes the guidance into the output')
        self.channels, self.scale_factor, self.up_kernel = channels, scale_factor, up_kernel
        self.guidance_channels, self.compressed_channels = guidance_channels, compressed_channels
        self.encoder_kernel, self.lite = encoder_kernel, lite
        self.encoder_compressor = nn.Conv2d(guidance_channels, compressed_channels, 1)
        self.decoder_compressor = nn.Conv2d(channels, compressed_channels, 1, bias=False)
        self.kernel_encoder = nn.Conv2d(compressed_channels, taps, encoder_kernel, padding=encoder_kernel // 2,
                                        groups=taps if lite else 1)
        self.gate = nn.Conv2d(channels, 1, 1) if gating else None
        self.init_weights()

    def init_weights(self):
        """Xavier-uniform weights and zero biases, as the release."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def kernels(self, x, guidance):
        """Reassembly kernels (B, k_up², S·H, S·W), softmax-normalised over the k_up² taps."""
        high = self.kernel_encoder(self.encoder_compressor(guidance))     # (B, k_up², S·H, S·W)
        low = self.kernel_encoder(self.decoder_compressor(x))             # (B, k_up², H, W)
        return F.softmax(add_nearest(high, low, self.scale_factor), dim=1)

    def forward(self, x, guidance):
        """x: (B, C, H, W); guidance: (B, C_g, S·H, S·W). Returns (B, C, S·H, S·W)."""
        check_guided_input(NAME, x, guidance, self.channels, self.guidance_channels, self.scale_factor)
        s = self.scale_factor
        masks = self.kernels(x, guidance)
        dtype = conv_dtype(x)   # the autocast dtype under autocast (the reassembly accumulates in fp32 anyway)
        up = carafe(features=x.to(dtype), masks=masks.to(dtype), kernel_size=self.up_kernel, group_size=1,
                    scale_factor=s)
        if self.gate is None:
            return up
        gate = torch.sigmoid(self.gate(x)).to(dtype)                      # (B, 1, H, W)
        b, _, h, w = x.shape
        gate = gate[:, :, :, None, :, None].expand(b, 1, h, s, w, s).reshape(b, 1, s * h, s * w)
        return gate * guidance.to(dtype) + (1 - gate) * up

    def extra_repr(self):
        return (f'{self.channels}, scale_factor={self.scale_factor}, up_kernel={self.up_kernel}, '
                f'guidance_channels={self.guidance_channels}, compressed_channels={self.compressed_channels}, '
                f'gating={self.gate is not None}, lite={self.lite}')
