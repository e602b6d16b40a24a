"""Export-friendly (functional, loop-over-taps) pure-PyTorch formulations of the custom ops.

The ops' CPU references accumulate in place into scratch buffers (memory-light training paths). An exported graph
must be functional, so the export decomposes ``mmdynconv::ddf`` into :func:`ddf_functional`, ``mmdynconv::carafe``
into :func:`carafe_functional` and ``mmdynconv::sapa`` into :func:`sapa_functional` instead: k² strided slices of
the zero-padded input, each multiplied by its filter or mask taps and summed (SAPA: its softmax-normalised query-key
similarities). Only Pad, Slice, Reshape, Mul and Add (SAPA: also ReduceSum, Softmax) remain, all ONNX standard ops.
"""
import torch
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


def carafe_functional(features, masks, kernel_size, group_size, scale_factor):
    """``mmdynconv::carafe`` in standard, out-of-place ops (traceable by ``torch.export``): features (B, C, H, W),
    masks (B, G·k², S·H, S·W) -> (B, C, S·H, S·W), the sum over the k² taps of the shifted features times their
    mask, per group."""
    b, c, h, w = features.shape
    k, g, s = kernel_size, group_size, scale_factor
    r = (k - 1) // 2
    acc = torch.promote_types(features.dtype, torch.float32)
    padded = F.pad(features.to(acc), (r, r, r, r)).view(b, g, c // g, 1, 1, h + 2 * r, w + 2 * r)
    m = F.pixel_unshuffle(masks.to(acc), s).view(b, g, k * k, s, s, h, w)
    out = sum(padded[..., i:i + h, j:j + w] * m[:, :, None, i * k + j] for i in range(k) for j in range(k))
    return F.pixel_shuffle(out.reshape(b, c * s * s, h, w), s).to(features.dtype)


def sapa_functional(query, key, value, kernel_size, scale_factor):
    """``mmdynconv::sapa`` in standard, out-of-place ops (traceable by ``torch.export``): query (B, D, S·H, S·W),
    key (B, D, H, W), value (B, C, H, W) -> (B, C, S·H, S·W). Per tap the similarity of the query with the shifted
    key; softmax over the k² taps; the sum of the shifted values times their weights."""
    b, c, h, w = value.shape
    d = key.shape[1]
    k, s = kernel_size, scale_factor
    r = (k - 1) // 2
    acc = torch.promote_types(value.dtype, torch.float32)
    q = F.pixel_unshuffle(query.to(acc), s).view(b, d, s, s, h, w)
    key_padded = F.pad(key.to(acc), (r, r, r, r))[:, :, None, None]
    value_padded = F.pad(value.to(acc), (r, r, r, r))[:, :, None, None]
    taps = [(i, j) for i in range(k) for j in range(k)]
    weights = torch.stack([(q * key_padded[..., i:i + h, j:j + w]).sum(1) for i, j in taps], 1).softmax(1)
    out = sum(value_padded[..., i:i + h, j:j + w] * weights[:, None, t] for t, (i, j) in enumerate(taps))
    return F.pixel_shuffle(out.reshape(b, c * s * s, h, w), s).to(value.dtype)
