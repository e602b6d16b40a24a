"""Exact pure-PyTorch reference of the decoupled dynamic filter (SPEC §1.1), forward and backward.

Shapes: x (B, C, H, W); channel filter fc (B, C, k, k); spatial filter fs (B, G·k², Ho, Wo), head h owning channels
[h·C/G, (h+1)·C/G); output (B, C, Ho, Wo) with Ho = ⌈H/s⌉, Wo = ⌈W/s⌉.

Both passes loop over the k² taps and work on the window of output pixels whose tap lands inside the image, so no
(B, C, k², Ho, Wo) buffer (unfold or combined kernel) and no padded copy of x is ever built; extra memory is one
output-sized scratch buffer (plus fp32 copies of half-precision gradients). fp16/bf16 inputs accumulate in fp32,
float64 in float64. These functions are called by the ``mmdynconv::ddf`` custom op, which owns autograd.
"""
import torch


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


def _taps(kernel_size, stride, dilation, in_hw, out_hw):
    """Yield ``(t, (out_rows, out_cols), (in_rows, in_cols))`` for every tap t = i·k + j that touches the image."""
    r = (kernel_size - 1) // 2
    for i in range(kernel_size):
        rows = tap_window((i - r) * dilation, in_hw[0], out_hw[0], stride)
        for j in range(kernel_size):
            cols = tap_window((j - r) * dilation, in_hw[1], out_hw[1], stride)
            if rows is not None and cols is not None:
                yield i * kernel_size + j, (rows[0], cols[0]), (rows[1], cols[1])


def _scratch(numel: int, like: torch.Tensor, dtype: torch.dtype):
    """A flat buffer from which every tap takes a contiguous window-sized view (no allocation per tap)."""
    return torch.empty(numel, dtype=dtype, device=like.device)


def ddf_forward_reference(x, channel_filter, spatial_filter, kernel_size: int, stride: int, dilation: int,
                          combine: str) -> torch.Tensor:
    """DDF forward: returns (B, C, Ho, Wo) in x's dtype. Inputs are assumed validated (see ``mmdynconv.ops.ddf``)."""
    B, C, H, W = x.shape
    k2 = kernel_size * kernel_size
    G = spatial_filter.shape[1] // k2
    Ho, Wo = spatial_filter.shape[2:]
    acc = accum_dtype(x.dtype)
    out = torch.empty((B, C, Ho, Wo), dtype=acc, device=x.device, memory_format=output_memory_format(x)).zero_()
    out5 = out.unflatten(1, (G, C // G))                                    # (B, G, C/G, Ho, Wo)
    x5 = x.unflatten(1, (G, C // G))                                        # (B, G, C/G, H, W)
    fc4 = channel_filter.to(acc).reshape(B, G, C // G, k2)                  # (B, G, C/G, k²)
    fs5 = spatial_filter.unflatten(1, (G, k2))                              # (B, G, k², Ho, Wo)
    scratch = _scratch(out.numel(), x, acc) if combine == 'mul' else None
    for t, (oy, ox), (iy, ix) in _taps(kernel_size, stride, dilation, (H, W), (Ho, Wo)):
        x_t = x5[..., iy, ix]                                               # (B, G, C/G, h, w) strided view
        fs_t = fs5[:, :, t, oy, ox].to(acc).unsqueeze(2)                    # (B, G, 1, h, w)
        fc_t = fc4[..., t, None, None]                                      # (B, G, C/G, 1, 1)
        out_t = out5[..., oy, ox]
        if combine == 'mul':
            prod = torch.mul(x_t, fc_t, out=scratch[:x_t.numel()].view(x_t.shape))
            out_t.addcmul_(prod, fs_t)
        else:
            out_t.addcmul_(x_t, fs_t).addcmul_(x_t, fc_t)
    return out.to(x.dtype)


def ddf_backward_reference(grad, x, channel_filter, spatial_filter, kernel_size: int, stride: int, dilation: int,
                           combine: str, need_x: bool, need_fc: bool, need_fs: bool):
    """DDF backward for the output gradient ``grad`` (B, C, Ho, Wo).

    Returns ``(grad_x, grad_channel_filter, grad_spatial_filter)`` in the inputs' dtype; an entry not asked for
    (``need_* = False``) is None. The two filter gradients are reductions of g·x_t (t = tap) over pixels
    (channel filter) and over the channels of a head (spatial filter), done as batched matrix products per tap.
    """
    B, C, H, W = x.shape
    k2 = kernel_size * kernel_size
    G = spatial_filter.shape[1] // k2
    cg = C // G
    Ho, Wo = spatial_filter.shape[2:]
    acc = accum_dtype(x.dtype)
    g5 = grad.to(acc).unflatten(1, (G, cg))                                 # (B, G, C/G, Ho, Wo)
    x5 = x.unflatten(1, (G, cg))
    fc4 = channel_filter.to(acc).reshape(B, G, cg, k2)
    fs5 = spatial_filter.unflatten(1, (G, k2))
    gx = torch.zeros_like(x, dtype=acc) if need_x else None
    gfc = x.new_zeros((B, G, cg, k2), dtype=acc) if need_fc else None
    gfs = x.new_zeros((B, G, k2, Ho, Wo), dtype=acc) if need_fs else None
    scratch = _scratch(B * C * Ho * Wo, x, acc)
    for t, (oy, ox), (iy, ix) in _taps(kernel_size, stride, dilation, (H, W), (Ho, Wo)):
        g_t = g5[..., oy, ox]                                               # (B, G, C/G, h, w)
        fs_t = fs5[:, :, t, oy, ox].to(acc)                                 # (B, G, h, w)
        fc_t = fc4[..., t, None, None]                                      # (B, G, C/G, 1, 1)
        n = g_t.shape[-2] * g_t.shape[-1]
        buf = scratch[:g_t.numel()].view(g_t.shape)
        if need_x:                                                          # gx[t window] += g·K_t
            gx_t = gx.unflatten(1, (G, cg))[..., iy, ix]
            if combine == 'mul':
                gx_t.addcmul_(torch.mul(g_t, fc_t, out=buf), fs_t.unsqueeze(2))
            else:
                gx_t.addcmul_(g_t, fs_t.unsqueeze(2)).addcmul_(g_t, fc_t)
        if not (need_fc or need_fs):
            continue
        gxt = torch.mul(g_t, x5[..., iy, ix], out=buf).view(B * G, cg, n)  # g·x_t
        if need_fc:                                                         # Σ_pixels g·x_t (·fs_t)
            if combine == 'mul':
                gfc[..., t] = torch.bmm(fs_t.reshape(B * G, 1, n), gxt.transpose(1, 2)).view(B, G, cg)
            else:
                gfc[..., t] = gxt.sum(-1).view(B, G, cg)
        if need_fs:                                                         # Σ_head channels g·x_t (·fc_t)
            if combine == 'mul':
                gfs[:, :, t, oy, ox] = torch.bmm(fc_t.reshape(B * G, 1, cg), gxt).view(fs_t.shape)
            else:
                gfs[:, :, t, oy, ox] = gxt.sum(1).view(fs_t.shape)
    return (gx.to(x.dtype) if need_x else None,
            gfc.view(channel_filter.shape).to(x.dtype) if need_fc else None,
            gfs.view(spatial_filter.shape).to(x.dtype) if need_fs else None)
