"""Fused Triton kernels of the decoupled dynamic filter (docs/ddf.md); ``ddf_reference.py`` is their oracle.

Shapes: x (B, C, H, W); channel filter fc (B, C, k, k); spatial filter fs (B, G·k², Ho, Wo); output / output
gradient g (B, C, Ho, Wo). Every tensor is addressed through its strides (channels-last, views and the stride-0
gradients of ``.sum()`` need no copy); accumulation is fp32 (fp64 for fp64 inputs), results are in x's dtype.

Kernels (plain pointer arithmetic and masks, no block pointers: Triton 3.6 to 3.9):

- ``_fwd``: program = (block of output pixels, block of channels of one head, sample). Loops over the k² taps,
  loading an x tile [channels, pixels], the spatial-filter row of the head (shared by the tile's channels) and the
  channel-filter column, and accumulates x·K in registers. K is never materialised.
- ``_bwd_x``: the same tiling over *input* pixels, gathering: gx[iy, ix] = Σ_t g[oy, ox]·K_t[oy, ox] over the taps
  with iy = oy·s + (i − r)·d (no atomics). With stride s > 1 the taps that hit no output pixel are masked, which
  wastes (s² − 1)/s² of the tap iterations (a tiling by pixel phase would avoid it).
- ``_bwd_filters``: program = (block of output pixels, head, channel split, sample). Per tap it forms g·x_t once
  for a [channels, pixels] tile and reduces it both ways: over the tile's pixels into a per-pixel-block partial of
  the channel-filter gradient, and over the channels into the spatial-filter gradient of its pixels. The pixel
  reduction is thus split across programs (scales with resolution) and finished by a ``sum`` over pixel blocks; when
  there are too few programs the head's channels are split too, with a ``sum`` over splits for the spatial filter.
  Every element is written by exactly one program: the kernels are deterministic.

Offsets inside a sample are int32 (checked: below 2³¹); sample offsets are int64. Tile sizes come from the
heuristics of ``default_config`` (no autotuning).
"""
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .backend import device_guard
from .ddf_reference import DDFOptions, accum_dtype, output_memory_format

__all__ = ['LaunchConfig', 'default_config', 'ddf_forward_triton', 'ddf_backward_triton']

_TL_ACC = {torch.float32: tl.float32, torch.float64: tl.float64}
_MAX_GRID_YZ = 65535
_MAX_SAMPLE_OFFSET = 2**31 - 1
_MIN_PROGRAMS = 512  # below this many filter-gradient programs, split the channels of a head as well


@triton.jit
def _tile(CG, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    """This program's tile of the element-wise kernels: head h, sample b, channels c (masked) and flat pixels p."""
    ncb = tl.cdiv(CG, BLOCK_C)
    h = tl.program_id(1) // ncb
    cl = (tl.program_id(1) % ncb) * BLOCK_C + tl.arange(0, BLOCK_C)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    return h, tl.program_id(2).to(tl.int64), h * CG + cl, cl < CG, p


@triton.jit
def _fwd(x_ptr, fc_ptr, fs_ptr, out_ptr, H, W, Ho, Wo, CG,
         sxb, sxc, sxh, sxw, sfcb, sfcc, sfci, sfcj, sfsb, sfsc, sfsh, sfsw, sob, soc, soh, sow,
         K: tl.constexpr, STRIDE: tl.constexpr, DIL: tl.constexpr, MUL: tl.constexpr, ACC: tl.constexpr,
         BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    h, b, c, c_mask, p = _tile(CG, BLOCK_C, BLOCK_P)
    p_mask = p < Ho * Wo
    oy = p // Wo
    ox = p % Wo
    x_base = x_ptr + b * sxb
    fc_chan = fc_ptr + b * sfcb + c * sfcc
    fs_pix = fs_ptr + b * sfsb + h * K * K * sfsc + oy * sfsh + ox * sfsw
    R = (K - 1) // 2
    acc = tl.zeros([BLOCK_C, BLOCK_P], dtype=ACC)
    for i in range(K):
        iy = oy * STRIDE + (i - R) * DIL
        row_ok = p_mask & (iy >= 0) & (iy < H)
        for j in range(K):
            ix = ox * STRIDE + (j - R) * DIL
            inside = row_ok & (ix >= 0) & (ix < W)
            xv = tl.load(x_base + (c * sxc)[:, None] + (iy * sxh + ix * sxw)[None, :],
                         mask=c_mask[:, None] & inside[None, :], other=0.0)
            fsv = tl.load(fs_pix + (i * K + j) * sfsc, mask=p_mask, other=0.0).to(ACC)
            fcv = tl.load(fc_chan + i * sfci + j * sfcj, mask=c_mask, other=0.0).to(ACC)
            if MUL:
                acc += xv.to(ACC) * (fcv[:, None] * fsv[None, :])
            else:
                acc += xv.to(ACC) * (fcv[:, None] + fsv[None, :])
    out_ptrs = out_ptr + b * sob + (c * soc)[:, None] + (oy * soh + ox * sow)[None, :]
    tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=c_mask[:, None] & p_mask[None, :])


@triton.jit
def _bwd_x(g_ptr, fc_ptr, fs_ptr, gx_ptr, H, W, Ho, Wo, CG,
           sgb, sgc, sgh, sgw, sfcb, sfcc, sfci, sfcj, sfsb, sfsc, sfsh, sfsw, sxb, sxc, sxh, sxw,
           K: tl.constexpr, STRIDE: tl.constexpr, DIL: tl.constexpr, MUL: tl.constexpr, ACC: tl.constexpr,
           BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    h, b, c, c_mask, p = _tile(CG, BLOCK_C, BLOCK_P)
    p_mask = p < H * W
    iy = p // W
    ix = p % W
    g_base = g_ptr + b * sgb
    fc_chan = fc_ptr + b * sfcb + c * sfcc
    fs_head = fs_ptr + b * sfsb + h * K * K * sfsc
    R = (K - 1) // 2
    acc = tl.zeros([BLOCK_C, BLOCK_P], dtype=ACC)
    for i in range(K):
        ny = iy - (i - R) * DIL  # = oy·s when this input row is tap row i of output row oy
        oy = ny // STRIDE
        row_hit = p_mask & (ny >= 0) & (oy < Ho)
        if STRIDE > 1:
            row_hit = row_hit & (oy * STRIDE == ny)
        for j in range(K):
            nx = ix - (j - R) * DIL
            ox = nx // STRIDE
            hit = row_hit & (nx >= 0) & (ox < Wo)
            if STRIDE > 1:
                hit = hit & (ox * STRIDE == nx)
            gv = tl.load(g_base + (c * sgc)[:, None] + (oy * sgh + ox * sgw)[None, :],
                         mask=c_mask[:, None] & hit[None, :], other=0.0)
            fsv = tl.load(fs_head + (i * K + j) * sfsc + oy * sfsh + ox * sfsw, mask=hit, other=0.0).to(ACC)
            fcv = tl.load(fc_chan + i * sfci + j * sfcj, mask=c_mask, other=0.0).to(ACC)
            if MUL:
                acc += gv.to(ACC) * (fcv[:, None] * fsv[None, :])
            else:
                acc += gv.to(ACC) * (fcv[:, None] + fsv[None, :])
    gx_ptrs = gx_ptr + b * sxb + (c * sxc)[:, None] + (iy * sxh + ix * sxw)[None, :]
    tl.store(gx_ptrs, acc.to(gx_ptr.dtype.element_ty), mask=c_mask[:, None] & p_mask[None, :])


@triton.jit
def _bwd_filters(g_ptr, x_ptr, fc_ptr, fs_ptr, gfc_ptr, gfs_ptr, H, W, Ho, Wo, CG, NCS,
                 sgb, sgc, sgh, sgw, sxb, sxc, sxh, sxw, sfcb, sfcc, sfci, sfcj, sfsb, sfsc, sfsh, sfsw,
                 gfc_s_split, gfc_s_b, gfc_s_c, gfs_s_split, gfs_s_b, gfs_s_c,
                 K: tl.constexpr, STRIDE: tl.constexpr, DIL: tl.constexpr, MUL: tl.constexpr, ACC: tl.constexpr,
                 BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    # gfc partial: (pixel blocks, B, C, k²), tap stride 1; gfs partial: (channel splits, B, G·k², Ho·Wo), pixel
    # stride 1. A split stride of 0 means the final tensor is written directly.
    pid_p = tl.program_id(0)
    h = tl.program_id(1) // NCS
    split = tl.program_id(1) % NCS
    b = tl.program_id(2).to(tl.int64)
    ncb = tl.cdiv(CG, BLOCK_C)
    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    p_mask = p < Ho * Wo
    oy = p // Wo
    ox = p % Wo
    g_pix = oy * sgh + ox * sgw
    g_base = g_ptr + b * sgb
    x_base = x_ptr + b * sxb
    fc_base = fc_ptr + b * sfcb
    fs_pix = fs_ptr + b * sfsb + h * K * K * sfsc + oy * sfsh + ox * sfsw
    gfc_base = gfc_ptr + pid_p.to(tl.int64) * gfc_s_split + b * gfc_s_b
    gfs_pix = gfs_ptr + split.to(tl.int64) * gfs_s_split + b * gfs_s_b + h * K * K * gfs_s_c + p
    R = (K - 1) // 2
    for i in range(K):
        iy = oy * STRIDE + (i - R) * DIL
        row_ok = p_mask & (iy >= 0) & (iy < H)
        for j in range(K):
            ix = ox * STRIDE + (j - R) * DIL
            inside = row_ok & (ix >= 0) & (ix < W)
            x_pix = iy * sxh + ix * sxw
            fsv = tl.load(fs_pix + (i * K + j) * sfsc, mask=p_mask, other=0.0).to(ACC)
            acc_fs = tl.zeros([BLOCK_P], dtype=ACC)
            for cb in range(split, ncb, NCS):
                cl = cb * BLOCK_C + tl.arange(0, BLOCK_C)
                c_mask = cl < CG
                c = h * CG + cl
                gv = tl.load(g_base + (c * sgc)[:, None] + g_pix[None, :], mask=c_mask[:, None] & p_mask[None, :],
                             other=0.0)
                xv = tl.load(x_base + (c * sxc)[:, None] + x_pix[None, :], mask=c_mask[:, None] & inside[None, :],
                             other=0.0)
                gx_t = gv.to(ACC) * xv.to(ACC)  # g·x_t, [BLOCK_C, BLOCK_P]
                if MUL:
                    fcv = tl.load(fc_base + c * sfcc + i * sfci + j * sfcj, mask=c_mask, other=0.0).to(ACC)
                    acc_fs += tl.sum(gx_t * fcv[:, None], axis=0)
                    gfc_part = tl.sum(gx_t * fsv[None, :], axis=1)
                else:
                    acc_fs += tl.sum(gx_t, axis=0)
                    gfc_part = tl.sum(gx_t, axis=1)
                tl.store(gfc_base + c * gfc_s_c + i * K + j, gfc_part.to(gfc_ptr.dtype.element_ty), mask=c_mask)
            tl.store(gfs_pix + (i * K + j) * gfs_s_c, acc_fs.to(gfs_ptr.dtype.element_ty), mask=p_mask)


@dataclass(frozen=True)
class LaunchConfig:
    """Tile sizes (powers of two) and the number of channel splits of the filter-gradient kernel."""
    block_c: int
    block_p: int
    filter_block_c: int
    filter_block_p: int
    channel_splits: int
    num_warps: int = 4


def default_config(x: torch.Tensor, kernel_size: int, heads: int, out_hw) -> LaunchConfig:
    """Tiles of up to 16 channels of a head × pixels: 1024 elements for the element-wise kernels (8 per thread at 4
    warps), 2048 for the filter-gradient kernel: 80-128 registers and no spills when compiled for sm_90. The
    filter-gradient partial sums stay below the size of x: its tile spans at least k²·(accumulator bytes / x bytes)
    pixels, and its channel splits (used when there are fewer than 512 programs) are capped likewise."""
    B, C, H, W = x.shape
    cg, k2 = max(1, C // heads), kernel_size * kernel_size
    n_out = out_hw[0] * out_hw[1]
    widen = accum_dtype(x.dtype).itemsize // x.element_size()  # accumulator bytes per x byte
    block_c = min(triton.next_power_of_2(cg), 16)
    block_p = min(1024 // block_c, max(16, triton.next_power_of_2(max(n_out, H * W))))
    filter_block_p = min(max(128, triton.next_power_of_2(k2 * widen)), max(16, triton.next_power_of_2(n_out)))
    filter_block_c = max(1, min(triton.next_power_of_2(cg), 2048 // filter_block_p))
    programs = triton.cdiv(n_out, filter_block_p) * heads * B
    splits = 1
    if 0 < programs < _MIN_PROGRAMS:
        splits = min(triton.cdiv(cg, filter_block_c), triton.cdiv(_MIN_PROGRAMS, programs), cg // (k2 * widen))
    return LaunchConfig(block_c, block_p, filter_block_c, filter_block_p, max(1, splits))


def _check_launch(x, spatial_filter, heads, config):
    cg = x.shape[1] // heads
    for name, t in (('x', x), ('spatial_filter', spatial_filter)):
        if sum((n - 1) * abs(st) for n, st in zip(t.shape[1:], t.stride()[1:])) > _MAX_SAMPLE_OFFSET:
            raise ValueError(f"ddf: backend='triton' needs offsets below 2**31 inside a sample of {name}, "
                             f"got shape {tuple(t.shape)} with strides {t.stride()}; use backend='reference'")
    blocks = heads * max(triton.cdiv(cg, config.block_c), config.channel_splits)
    if x.shape[0] > _MAX_GRID_YZ or blocks > _MAX_GRID_YZ:
        raise ValueError(f"ddf: backend='triton' supports at most {_MAX_GRID_YZ} samples and {_MAX_GRID_YZ} "
                         f'channel blocks, got x of shape {tuple(x.shape)}')


def _common(x, kernel_size, spatial_filter, config):
    heads = spatial_filter.shape[1] // (kernel_size * kernel_size)
    out_hw = tuple(spatial_filter.shape[2:])
    config = config or default_config(x, kernel_size, heads, out_hw)
    _check_launch(x, spatial_filter, heads, config)
    return heads, out_hw, config, _TL_ACC[accum_dtype(x.dtype)]


def ddf_forward_triton(x, channel_filter, spatial_filter, options: DDFOptions,
                       config: LaunchConfig = None) -> torch.Tensor:
    """DDF forward with the fused kernel: returns (B, C, Ho, Wo) in x's dtype. Inputs are assumed validated."""
    kernel_size, stride, dilation, combine = options
    B, C, H, W = x.shape
    heads, (Ho, Wo), cfg, acc = _common(x, kernel_size, spatial_filter, config)
    out = torch.empty((B, C, Ho, Wo), dtype=x.dtype, device=x.device, memory_format=output_memory_format(x))
    if out.numel() == 0:
        return out
    grid = (triton.cdiv(Ho * Wo, cfg.block_p), heads * triton.cdiv(C // heads, cfg.block_c), B)
    with device_guard(x):
        _fwd[grid](x, channel_filter, spatial_filter, out, H, W, Ho, Wo, C // heads,
                   *x.stride(), *channel_filter.stride(), *spatial_filter.stride(), *out.stride(),
                   K=kernel_size, STRIDE=stride, DIL=dilation, MUL=combine == 'mul', ACC=acc,
                   BLOCK_C=cfg.block_c, BLOCK_P=cfg.block_p, num_warps=cfg.num_warps)
    return out


def ddf_backward_triton(grad, x, channel_filter, spatial_filter, options: DDFOptions, needs,
                        config: LaunchConfig = None):
    """DDF backward with the fused kernels; same contract as ``ddf_backward_reference``."""
    kernel_size, stride, dilation, combine = options
    need_x, need_fc, need_fs = needs
    B, C, H, W = x.shape
    heads, (Ho, Wo), cfg, acc = _common(x, kernel_size, spatial_filter, config)
    cg, k2 = C // heads, kernel_size * kernel_size
    consts = dict(K=kernel_size, STRIDE=stride, DIL=dilation, MUL=combine == 'mul', ACC=acc, num_warps=cfg.num_warps)
    empty = grad.numel() == 0 or x.numel() == 0
    gx = gfc = gfs = None
    if need_x:
        gx = torch.zeros_like(x) if empty else torch.empty_like(x)
        if not empty:
            grid = (triton.cdiv(H * W, cfg.block_p), heads * triton.cdiv(cg, cfg.block_c), B)
            with device_guard(x):
                _bwd_x[grid](grad, channel_filter, spatial_filter, gx, H, W, Ho, Wo, cg,
                             *grad.stride(), *channel_filter.stride(), *spatial_filter.stride(), *gx.stride(),
                             BLOCK_C=cfg.block_c, BLOCK_P=cfg.block_p, **consts)
    if not (need_fc or need_fs):
        return gx, gfc, gfs
    if empty:
        return gx, (torch.zeros_like(channel_filter, memory_format=torch.contiguous_format) if need_fc else None), \
            (torch.zeros_like(spatial_filter, memory_format=torch.contiguous_format) if need_fs else None)
    n_pblocks = triton.cdiv(Ho * Wo, cfg.filter_block_p)
    splits = min(cfg.channel_splits, triton.cdiv(cg, cfg.filter_block_c))
    acc_t = accum_dtype(x.dtype)
    gfc_buf = (x.new_empty((B, C, k2)) if n_pblocks == 1 else x.new_empty((n_pblocks, B, C, k2), dtype=acc_t))
    gfs_buf = (x.new_empty((B, heads * k2, Ho, Wo)) if splits == 1
               else x.new_empty((splits, B, heads * k2, Ho, Wo), dtype=acc_t))
    gfc_strides = (0, C * k2, k2) if n_pblocks == 1 else gfc_buf.stride()[:3]
    gfs_strides = (0, heads * k2 * Ho * Wo, Ho * Wo) if splits == 1 else gfs_buf.stride()[:3]
    grid = (n_pblocks, heads * splits, B)
    with device_guard(x):
        _bwd_filters[grid](grad, x, channel_filter, spatial_filter, gfc_buf, gfs_buf, H, W, Ho, Wo, cg, splits,
                           *grad.stride(), *x.stride(), *channel_filter.stride(), *spatial_filter.stride(),
                           *gfc_strides, *gfs_strides,
                           BLOCK_C=cfg.filter_block_c, BLOCK_P=cfg.filter_block_p, **consts)
    if need_fc:
        gfc = (gfc_buf if n_pblocks == 1 else gfc_buf.sum(0).to(x.dtype)).view(B, C, kernel_size, kernel_size)
    if need_fs:
        gfs = gfs_buf if splits == 1 else gfs_buf.sum(0).to(x.dtype)
    return gx, gfc, gfs
