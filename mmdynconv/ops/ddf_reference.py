"""Exact pure-PyTorch reference of the decoupled dynamic filter (docs/ddf.md), forward and backward.

Shapes: x (B, C, H, W); channel filter fc (B, C, k, k); spatial filter fs (B, G·k², Ho, Wo), head h owning channels
[h·C/G, (h+1)·C/G); output (B, C, Ho, Wo) with Ho = ⌈H/s⌉, Wo = ⌈W/s⌉.

Both passes loop over the k² taps and work on the window of output pixels whose tap lands inside the image, so no
(B, C, k², Ho, Wo) buffer (unfold or combined kernel) and no padded copy of x is ever built; extra memory is one
output-sized scratch buffer plus layout/precision copies (x, the output gradient and the results, when the compute
layout or dtype differs). fp16/bf16 inputs accumulate in fp32, float64 in float64. The element-wise work runs in
channels-last memory when a head has more channels than twice the output width (small feature maps: long inner
loops over channels instead of short image rows), in contiguous memory otherwise; results are the same.
These functions are called by the ``mmdynconv::ddf`` custom op, which owns autograd; the Triton kernels of
:mod:`.ddf_triton` have the same contract.
"""
from typing import NamedTuple

import torch

__all__ = ['DDFOptions', 'accum_dtype', 'output_memory_format', 'tap_window', 'compute_layout',
           'ddf_forward_reference', 'ddf_backward_reference']


class DDFOptions(NamedTuple):
    """The non-tensor arguments of a DDF call, in the order of the custom op's schema."""
    kernel_size: int   # odd k
    stride: int
    dilation: int
    combine: str       # 'mul' or 'add'


def accum_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 for float64 inputs, float32 for everything narrower."""
    return torch.promote_types(dtype, torch.float32)


def output_memory_format(x: torch.Tensor) -> torch.memory_format:
    """Channels-last when x is (only) channels-last contiguous, like a convolution; contiguous otherwise."""
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def tap_window(offset: int, size_in: int, size_out: int, stride: int):
    """Output index range [o0, o1) whose input index ``o·stride + offset`` lies in [0, size_in).

    Returns ``(output_slice, input_slice)``, or ``None`` when the tap never lands inside the input.
    """
    o0 = max(0, -(offset // stride))  # ceil(-offset / stride)
    o1 = min(size_out, (size_in - 1 - offset) // stride + 1)
    if o1 <= o0:
        return None
    i0 = o0 * stride + offset
    return slice(o0, o1), slice(i0, i0 + (o1 - o0 - 1) * stride + 1, stride)


def _taps(options, in_hw, out_hw):
    """Yield ``(t, (out_rows, out_cols), (in_rows, in_cols))`` for every tap t = i·k + j that touches the image."""
    kernel_size, stride, dilation, _ = options
    r = (kernel_size - 1) // 2
    for i in range(kernel_size):
        rows = tap_window((i - r) * dilation, in_hw[0], out_hw[0], stride)
        for j in range(kernel_size):
            cols = tap_window((j - r) * dilation, in_hw[1], out_hw[1], stride)
            if rows is not None and cols is not None:
                yield i * kernel_size + j, (rows[0], cols[0]), (rows[1], cols[1])


def compute_layout(channels_per_head: int, out_width: int) -> torch.memory_format:
    """Memory order of the element-wise work: the one with the longer innermost loop (channels vs. image row)."""
    return torch.channels_last if channels_per_head > 2 * out_width else torch.contiguous_format


def _window_buffer(scratch, shape, layout):
    """A view of the flat ``scratch`` shaped (B, G, C/G, h, w), dense in ``layout``."""
    B, G, cg, h, w = shape
    window = scratch[:B * G * cg * h * w]
    if layout == torch.channels_last:
        return window.view(B, h, w, G, cg).permute(0, 3, 4, 1, 2)
    return window.view(shape)


def _finish(result, template):
    """``result`` with the dtype and strides of ``template`` (a meta tensor); copied only if they differ."""
    if result.dtype == template.dtype and result.stride() == template.stride():
        return result
    return result.new_empty_strided(template.shape, template.stride(), dtype=template.dtype).copy_(result)


def _channel_taps(channel_filter, heads, dtype):
    """(k², B, G, C/G, 1, 1): tap t's channel-filter values, contiguous over channels."""
    B, C, k, _ = channel_filter.shape
    taps = channel_filter.to(dtype).reshape(B, C, k * k).permute(2, 0, 1).contiguous()
    return taps.view(k * k, B, heads, C // heads, 1, 1)


def ddf_forward_reference(x, channel_filter, spatial_filter, options: DDFOptions) -> torch.Tensor:
    """DDF forward: returns (B, C, Ho, Wo) in x's dtype. Inputs are assumed validated (see ``mmdynconv.ops.ddf``)."""
    out = _forward_taps(x, channel_filter, spatial_filter, options)
    template = torch.empty(out.shape, dtype=x.dtype, device='meta', memory_format=output_memory_format(x))
    return _finish(out, template)


def _forward_taps(x, channel_filter, spatial_filter, options):
    """The tap loop of the forward: returns the accumulator (B, C, Ho, Wo) in the compute layout and dtype."""
    kernel_size, combine = options.kernel_size, options.combine
    B, C, H, W = x.shape
    k2 = kernel_size * kernel_size
    G = spatial_filter.shape[1] // k2
    Ho, Wo = spatial_filter.shape[2:]
    acc = accum_dtype(x.dtype)
    layout = compute_layout(C // G, Wo)
    out = torch.empty((B, C, Ho, Wo), dtype=acc, device=x.device, memory_format=layout).zero_()
    out5 = out.unflatten(1, (G, C // G))                                    # (B, G, C/G, Ho, Wo)
    x5 = x.contiguous(memory_format=layout).unflatten(1, (G, C // G))       # (B, G, C/G, H, W)
    fc_taps = _channel_taps(channel_filter, G, acc)                         # (k², B, G, C/G, 1, 1)
    fs5 = spatial_filter.unflatten(1, (G, k2))                              # (B, G, k², Ho, Wo)
    scratch = out.new_empty(out.numel()) if combine == 'mul' else None
    for t, (oy, ox), (iy, ix) in _taps(options, (H, W), (Ho, Wo)):
        x_t = x5[..., iy, ix]                                               # (B, G, C/G, h, w) strided view
        fs_t = fs5[:, :, t, oy, ox].to(acc).unsqueeze(2)                    # (B, G, 1, h, w)
        out_t = out5[..., oy, ox]
        if combine == 'mul':
            out_t.addcmul_(torch.mul(x_t, fc_taps[t], out=_window_buffer(scratch, x_t.shape, layout)), fs_t)
        else:
            out_t.addcmul_(x_t, fs_t).addcmul_(x_t, fc_taps[t])
    return out


def ddf_backward_reference(grad, x, channel_filter, spatial_filter, options: DDFOptions, needs):
    """DDF backward for the output gradient ``grad`` (B, C, Ho, Wo).

    Returns ``(grad_x, grad_channel_filter, grad_spatial_filter)`` in the inputs' dtype; an entry not asked for in
    ``needs`` (three bools, same order) is None. The two filter gradients are reductions of g·x_t (t = tap) over
    pixels (channel filter) and over the channels of a head (spatial filter), done as batched matrix products per tap.
    """
    need_x, need_fc, need_fs = needs
    gx, gfc, gfs = _backward_taps(grad, x, channel_filter, spatial_filter, options, needs)
    return (_finish(gx, torch.empty_like(x, device='meta')) if need_x else None,
            gfc.view(channel_filter.shape).to(x.dtype) if need_fc else None,
            gfs.view(spatial_filter.shape).to(x.dtype) if need_fs else None)


def _backward_taps(grad, x, channel_filter, spatial_filter, options, needs):
    """The tap loop of the backward: accumulators gx (B, C, H, W) in the compute layout, gfc (B, G, C/G, k²) and
    gfs (B, G, k², Ho, Wo), in the accumulation dtype (None where not needed)."""
    kernel_size, combine = options.kernel_size, options.combine
    need_x, need_fc, need_fs = needs
    B, C, H, W = x.shape
    k2 = kernel_size * kernel_size
    G = spatial_filter.shape[1] // k2
    cg = C // G
    Ho, Wo = spatial_filter.shape[2:]
    acc = accum_dtype(x.dtype)
    layout = compute_layout(cg, Wo)
    g5 = grad.to(acc).contiguous(memory_format=layout).unflatten(1, (G, cg))  # (B, G, C/G, Ho, Wo)
    x5 = x.contiguous(memory_format=layout).unflatten(1, (G, cg))
    fc_taps = _channel_taps(channel_filter, G, acc)                         # (k², B, G, C/G, 1, 1)
    fs5 = spatial_filter.unflatten(1, (G, k2))
    gx = torch.empty(x.shape, dtype=acc, device=x.device, memory_format=layout).zero_() if need_x else None
    gfc = x.new_zeros((B, G, cg, k2), dtype=acc) if need_fc else None
    gfs = x.new_zeros((B, G, k2, Ho, Wo), dtype=acc) if need_fs else None
    scratch = g5.new_empty(g5.numel())
    for t, (oy, ox), (iy, ix) in _taps(options, (H, W), (Ho, Wo)):
        g_t = g5[..., oy, ox]                                               # (B, G, C/G, h, w)
        fs_t = fs5[:, :, t, oy, ox].to(acc)                                 # (B, G, h, w)
        buf = _window_buffer(scratch, g_t.shape, layout)
        if need_x:                                                          # gx[t window] += g·K_t
            gx_t = gx.unflatten(1, (G, cg))[..., iy, ix]
            if combine == 'mul':
                gx_t.addcmul_(torch.mul(g_t, fc_taps[t], out=buf), fs_t.unsqueeze(2))
            else:
                gx_t.addcmul_(g_t, fs_t.unsqueeze(2)).addcmul_(g_t, fc_taps[t])
        if not (need_fc or need_fs):
            continue
        gxt = torch.mul(g_t, x5[..., iy, ix], out=buf).flatten(3)           # g·x_t as (B, G, C/G, h·w)
        if need_fc:                                                         # Σ_pixels g·x_t (·fs_t)
            if combine == 'mul':
                row = fs_t.reshape(B, G, 1, gxt.shape[-1])
                gfc[..., t] = torch.matmul(row, gxt.transpose(2, 3)).view(B, G, cg)
            else:
                gfc[..., t] = gxt.sum(-1)
        if need_fs:                                                         # Σ_head channels g·x_t (·fc_t)
            if combine == 'mul':
                gfs[:, :, t, oy, ox] = torch.matmul(fc_taps[t].view(B, G, 1, cg), gxt).view(fs_t.shape)
            else:
                gfs[:, :, t, oy, ox] = gxt.sum(2).view(fs_t.shape)
    return gx, gfc, gfs
