"""Export-friendly (functional, loop-over-taps) pure-PyTorch formulations of the custom ops.

The ops' CPU references accumulate in place into scratch buffers (memory-light training paths). An exported graph
must be functional, so the export decomposes ``mmdynconv::ddf`` into :func:`ddf_functional` instead: k² strided
slices of the zero-padded input, each multiplied by its spatial and channel filter taps and summed. Only Pad,
Slice, Reshape, Mul and Add remain, which every ONNX runtime has.
"""
import torch.nn.functional as F


def ddf_functional(x, channel_filter, spatial_filter, kernel_size, stride=1, dilation=1, combine='mul'):
    """Same result as :func:`mmdynconv.ops.ddf` (docs/ddf.md), written with out-of-place ops only.

    Shapes: x (B, C, H, W); channel_filter (B, C, k, k); spatial_filter (B, G·k², Ho, Wo) → (B, C, Ho, Wo).
    Accumulates in x's dtype (exports run in fp32).
    """
    b, c, h, w = x.shape
    k, s, d = kernel_size, stride, dilation
    k2 = k * k
    g = spatial_filter.shape[1] // k2
    ho, wo = spatial_filter.shape[2:]
    pad = (k - 1) // 2 * d
    xg = F.pad(x, (pad, pad, pad, pad)).reshape(b, g, c // g, h + 2 * pad, w + 2 * pad)
    fs = spatial_filter.reshape(b, g, 1, k2, ho, wo)
    fc = channel_filter.reshape(b, g, c // g, k2, 1, 1)
    out = None
    for i in range(k):
        for j in range(k):
            t = i * k + j
            window = xg[:, :, :, i * d:i * d + (ho - 1) * s + 1:s, j * d:j * d + (wo - 1) * s + 1:s]
            tap = fs[:, :, :, t] * fc[:, :, :, t] if combine == 'mul' else fs[:, :, :, t] + fc[:, :, :, t]
            out = tap * window if out is None else out + tap * window
    return out.reshape(b, c, ho, wo)
