"""FDConv inference mode: the n candidate kernels precomputed once, mixed per sample by a matrix product.

At inference nothing about the candidate kernels depends on the input until the kernel attention π: by linearity
``irfft2(spectrum·α·π_b[band]) = Σ_j π_bj W_j`` with ``W_j = irfft2(spectrum·α·[band = j])`` (docs/fdconv.md). The mode
caches the W_j of every dynamic FDConv layer ((n, Co·Ci·k²) fp32: n times the layer's weight) and replaces the
per-sample inverse FFT by one (B, n) × (n, Co·Ci·k²) product; the attentions and the per-sample convolution are
those of :func:`mmdynconv.ops.fdconv_oracle.fdconv_oracle`. FBM's band masks and bases need no extra cache: the op
already caches them per input size.

The cache is rebuilt when the spectrum changes: in-place updates (optimiser steps, ``load_state_dict``) bump the
parameter's ``_version``, replacing it changes its ``data_ptr``; device and dtype are part of the key too. It is the
layer mode ``'inference'`` (:attr:`mmdynconv.layers.FDConv.mode`): the cached path runs only for a layer in eval mode
with gradients disabled (``torch.no_grad()``, as mmengine's val/test loops run); otherwise the layer's default
forward runs, so training is unaffected. Leaving the mode drops the cache.

    model.apply(fdconv_inference_mode)            # on
    model.apply(partial(fdconv_inference_mode, enabled=False))   # off

Whether it is faster depends on the shape: ``tools/benchmark_inference.py`` measures it.
"""
import torch
import torch.nn.functional as F

from ..ops.compat import compile_disabled
from ..ops.fdconv_inputs import check_fdconv_inputs
from ..ops.fdconv_oracle import local_attention_oracle
from ..ops.fdconv_spectrum import tiled_to_weight

__all__ = ['candidate_kernels', 'inference_conv', 'fdconv_inference_mode']


@compile_disabled
def candidate_kernels(layer):
    """(n, Co·Ci·k²) fp32: W_j = irfft2(spectrum·α·[band = j]), cached on the layer until the spectrum changes.

    A Python-side cache, so never compiled: under ``torch.compile`` the inference mode breaks the graph here (and
    ``fullgraph=True`` fails; mode ``'default'`` compiles in one graph)."""
    spectrum = layer.spectrum
    key = (spectrum.data_ptr(), spectrum._version, spectrum.device, spectrum.dtype)
    cache = getattr(layer, '_inference_candidates', None)
    if cache is not None and cache[0] == key:
        return cache[1]
    co, ci, k, n = layer.out_channels, layer.in_channels, layer.kernel_size, layer.kernel_num
    with torch.no_grad():
        coefficients = torch.view_as_complex(spectrum.detach().float().contiguous()) * layer.scale
        one_hot = layer.band_index == torch.arange(n, device=spectrum.device).view(n, 1, 1)
        tiled = torch.fft.irfft2(coefficients * one_hot, s=(co * k, ci * k))  # (n, Co·k, Ci·k)
        candidates = tiled_to_weight(tiled, co, ci, k).reshape(n, -1)
    layer._inference_candidates = (key, candidates)
    return candidates


def inference_conv(layer, x, att):
    """The per-sample convolution of a dynamic FDConv ``layer`` with its kernels mixed from the cached candidates.

    x: (B, Ci, H, W), already band-modulated by FBM; ``att``: the :class:`~mmdynconv.ops.FDConvAttention` the layer
    computes (kernel_att (B, n) or None for n = 1, local_feat (B, Ci), pos_att (B, k²) or None, in_att (B, Ci),
    out_att (B, Co)); the local conv weight (Co·k², 1, κ) is the layer's ``ksm_local.weight``. Returns
    (B, Co, Ho, Wo).
    """
    check_fdconv_inputs('inference_conv', att=att)
    kernel_att, local_feat, pos_att, in_att, out_att = att
    local_weight = layer.ksm_local.weight
    b, ci, h, w = x.shape
    co, k = layer.out_channels, layer.kernel_size
    candidates = candidate_kernels(layer)
    if kernel_att is None:  # n = 1
        mixed = candidates.expand(b, -1)
    else:
        mixed = kernel_att.float() @ candidates
    weight = mixed.view(b, co, ci, k, k) * local_attention_oracle(local_feat.float(), local_weight.float(), co, k)
    if pos_att is not None:
        weight = weight * pos_att.view(b, 1, 1, k, k)
    weight = weight * in_att.view(b, 1, ci, 1, 1) * out_att.view(b, co, 1, 1, 1)
    y = F.conv2d(x.reshape(1, b * ci, h, w), weight.reshape(b * co, ci, k, k).to(x.dtype), None, layer.stride,
                 layer.padding, layer.dilation, groups=b)
    y = y.view(b, co, *y.shape[-2:])
    return y if layer.bias is None else y + layer.bias.view(1, co, 1, 1).to(y.dtype)


def fdconv_inference_mode(module, enabled=True):
    """For ``model.apply``: put an FDConv layer in mode ``'inference'`` (``enabled=True``) or back to ``'default'``
    (``False``, cache dropped), see :attr:`mmdynconv.layers.FDConv.mode`; other modules are left alone."""
    from .fdconv import FDConv  # here: fdconv.py imports this module

    if isinstance(module, FDConv):
        module.mode = 'inference' if enabled else 'default'
    return module
