"""FLOP handles of FDConv's ops for mmengine's ``FlopAnalyzer`` (declared in :mod:`.declarations`).

FDConv op, per sample b (the kernel W_b; once for all samples when there is no kernel attention): spectral mixing
numel(spectrum) + an inverse rfft2 of P = Co·Ci·k² points, and per sample always the KSM local 1-D conv P·κ and the
modulation by α_in, α_out, α_pos, α_local 4·P (key ``fdconv_kernel``); the per-sample conv B·Co·Ci·k²·Ho·Wo (key
``fdconv_conv``). FBM, per image and channel of an H×W input with M bands: one rfft2 and M inverse rfft2 of H·W
points and M·H·W band modulations (key ``frequency_band_mix``). A real FFT of N points costs 2.5·N·log2(N).
"""
import math
from collections import Counter
from math import prod

__all__ = ['fft_flops', 'fdconv_flops', 'frequency_band_mix_flops']

FLOAT_TYPES = ('Float', 'Double', 'Half', 'BFloat16')


def fft_flops(n):
    """FLOPs of a real FFT (or its inverse) of ``n`` points: 2.5·n·log2(n)."""
    return 2.5 * n * math.log2(n) if n > 1 else 0.0


def _float_shapes(inputs):
    return [v.type().sizes() for v in inputs
            if v.isCompleteTensor() and v.type().scalarType() in FLOAT_TYPES]


def fdconv_flops(inputs, outputs):
    """FDConv op (``x, spectrum, ..., local_weight (Co·k², 1, κ), ...`` -> (B, Co, Ho, Wo)); inputs are recognised
    by shape, so the handle does not depend on the argument order."""
    shapes = _float_shapes(inputs)
    x, out = shapes[0], outputs[0].type().sizes()
    b, ci = x[:2]
    co, ho, wo = out[1:]
    spectrum = next(s for s in shapes if len(s) == 3 and s[-1] == 2 and s[0] % co == 0)
    local = next(s for s in shapes if len(s) == 3 and s[1] == 1 and s[-1] % 2 == 1 and s[0] % co == 0)
    k = spectrum[0] // co
    p = co * ci * k * k
    per_sample_vectors = sum(1 for s in shapes if len(s) == 2 and s[0] == b)
    has_kernel_att = per_sample_vectors > 3 + (k > 1)  # local_feat, in_att, out_att (+ pos_att) (+ kernel_att)
    assembly = prod(spectrum) + fft_flops(p)
    kernel = (b if has_kernel_att else 1) * assembly + b * (p * local[-1] + 4 * p)
    return Counter({'fdconv_kernel': int(kernel), 'fdconv_conv': b * p * ho * wo})


def frequency_band_mix_flops(inputs, outputs):
    """FBM: x (B, C, H, W), attention (B, M, H, W) -> (B, C, H, W)."""
    shapes = _float_shapes(inputs)
    b, c, h, w = shapes[0]
    m = shapes[1][1]
    return Counter({'frequency_band_mix': int(b * c * ((1 + m) * fft_flops(h * w) + m * h * w))})
