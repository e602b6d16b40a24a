"""The FDConv oracle: docs/fdconv.md written straightforwardly, for clarity — what the tests compare both backends of
:func:`mmdynconv.ops.fdconv_dynamic_conv` (and the lean FBM) against, and the benchmarks' baseline. Plain autograd;
every per-sample dense tensor is materialised.
"""
import torch
import torch.nn.functional as F

from .fdconv_fbm import CUTOFFS, lowpass_masks
from .fdconv_inputs import check_fdconv_inputs
from .fdconv_spectrum import tiled_to_weight

__all__ = ['local_attention_oracle', 'fdconv_weight_oracle', 'fdconv_oracle', 'frequency_band_mix_oracle']


def local_attention_oracle(local_feat, local_weight, out_channels, kernel_size):
    """KSM local branch head: 2·sigmoid of a 1-D conv across channels.

    Args:
        local_feat: (B, Ci) layer-normalised pooled input.
        local_weight: (Co·k², 1, κ) conv1d weight; output channel o·k² + u·k + v, position i gives entry
            (o, i, u, v).

    Returns:
        (B, Co, Ci, k, k) dense attention.
    """
    k = kernel_size
    logits = F.conv1d(local_feat.unsqueeze(1), local_weight, padding=local_weight.shape[-1] // 2)
    att = 2 * torch.sigmoid(logits)  # (B, Co·k², Ci)
    return att.unflatten(1, (out_channels, k, k)).permute(0, 1, 4, 2, 3)


def fdconv_weight_oracle(spectrum, band_index, scale, kernel_att, local_att, pos_att, in_att, out_att):
    """Per-sample kernels W_b = α_in ⊙ α_out ⊙ α_pos ⊙ α_local ⊙ irfft2(spectrum · scale · π_b[band]).

    Args:
        spectrum: (Co·k, ⌊Ci·k/2⌋+1, 2); band_index: int64 (Co·k, ⌊Ci·k/2⌋+1); scale: α = s·n.
        kernel_att: (B, n) or None (n = 1); local_att: (B, Co, Ci, k, k); pos_att: (B, k²) or None (k = 1);
        in_att: (B, Ci); out_att: (B, Co).

    Returns:
        (B, Co, Ci, k, k) float32.
    """
    b, co, ci, k, _ = local_att.shape
    coefficients = torch.view_as_complex(spectrum.float().contiguous()) * scale
    if kernel_att is not None:
        coefficients = coefficients * kernel_att.float()[:, band_index]
    tiled = torch.fft.irfft2(coefficients, s=(co * k, ci * k))
    weight = tiled_to_weight(tiled, co, ci, k) * local_att
    if pos_att is not None:
        weight = weight * pos_att.view(b, 1, 1, k, k)
    return weight * in_att.view(b, 1, ci, 1, 1) * out_att.view(b, co, 1, 1, 1)


def fdconv_oracle(x, weight, att, bias=None, stride=1, padding=0, dilation=1):
    """FDConv's dynamic convolution, straightforwardly: build every W_b, then one grouped conv over the batch.

    Arguments as :func:`mmdynconv.ops.fdconv_dynamic_conv` (``weight`` an :class:`~.fdconv_inputs.FDConvWeight`,
    ``att`` an :class:`~.fdconv_inputs.FDConvAttention`). Returns (B, Co, Ho, Wo).
    """
    check_fdconv_inputs('fdconv_oracle', weight=weight, att=att)
    b, ci, h, w = x.shape
    co = att.out_att.shape[1]
    k = weight.spectrum.shape[0] // co
    local_att = local_attention_oracle(att.local_feat.float(), weight.local_weight.float(), co, k)
    kernels = fdconv_weight_oracle(weight.spectrum, weight.band_index, weight.scale, att.kernel_att, local_att,
                                   att.pos_att, att.in_att, att.out_att)
    y = F.conv2d(x.reshape(1, b * ci, h, w), kernels.reshape(b * co, ci, k, k).to(x.dtype), None, stride, padding,
                 dilation, groups=b)
    y = y.view(b, co, *y.shape[-2:])
    return y if bias is None else y + bias.view(1, co, 1, 1).to(y.dtype)


def frequency_band_mix_oracle(x, att, cutoffs=CUTOFFS, mask_mode='release'):
    """``Σ_m att[:, m] ⊙ B_m(x) + low(x)`` with the bands computed explicitly by masked fp32 FFTs, as the release
    does (result in x's dtype). Arguments as :func:`mmdynconv.ops.frequency_band_mix`."""
    x32 = x.float()
    spectrum = torch.fft.rfft2(x32, norm='ortho')
    masks = lowpass_masks(*x.shape[-2:], cutoffs, mask_mode, x.device)
    lows = [torch.fft.irfft2(spectrum * mask, s=x.shape[-2:], norm='ortho') for mask in masks]
    highs = [x32] + lows[:-1]
    bands = [high - low for high, low in zip(highs, lows)]
    out = sum(att[:, m:m + 1].float() * band for m, band in enumerate(bands)) + lows[-1]
    return out.to(x.dtype)
