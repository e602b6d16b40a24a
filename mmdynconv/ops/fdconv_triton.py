"""Fused Triton kernels for the per-entry work of FDConv's dynamic kernel (the op is :mod:`.fdconv`).

For the samples of a chunk, with entries indexed (b, o, u, v, i) = (sample, Co, k row, k column, Ci):

- forward: ``W = tiles ⊙ σ(L) ⊙ α_pos[u, v] (⊙ α_out[o] ⊙ α_in[i] when folded)``, where the dense local logits
  ``L[b, o·k²+u·k+v, i] = Σ_t local_weight[o·k²+u·k+v, t] · local_feat[b, i + t − κ//2]`` (zero outside [0, Ci)) are
  computed in registers: one read of the mixed kernels, one write of W in the conv dtype, instead of the reference's
  GEMM, sigmoid and three multiplication passes;
- backward, from dW: ``Q = dW ⊙ tiles ⊙ σ`` (for the small attentions' gradients), ``d tiles = dW ⊙ α_pos ⊙ α_out
  (⊙ α_in) ⊙ σ`` and ``d L = d tiles ⊙ tiles ⊙ (1 − σ)``, σ recomputed, each written only when asked for.

Every tensor is addressed through its strides, so the mixed kernels are read straight from the inverse FFT's tiled
(Co·k, Ci·k) layout, dW straight from the convolution's gradient, and d tiles written in the tiled layout the FFT of
the backward reads: no transposing copies. Arithmetic in fp32; W in the requested dtype. Each element is written by
one program (deterministic). The pure-PyTorch path these replace is the reference (``KernelAssembly.weight`` and
``weight_backward`` in :mod:`.fdconv_assembly`); tests compare the two.
"""
import torch
import triton
import triton.language as tl

__all__ = ['assemble_weight_triton', 'assemble_weight_backward_triton']

BLOCK_I = 128


@triton.jit
def _entries(CI, K: tl.constexpr, BLOCK: tl.constexpr):
    """This program's entries: row r = o·k² + u·k + v (uv = u·k + v), sample b, input channels i (masked)."""
    r = tl.program_id(0)                                               # grid axis 0: no 65535 limit on Co·k²
    b = tl.program_id(2).to(tl.int64)
    o, uv = r // (K * K), r % (K * K)
    i = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    return r, b, o, uv, uv // K, uv % K, i, i < CI


@triton.jit
def _sigma(lw_ptr, feat_ptr, r, b, i, i_mask, CI, KAPPA: tl.constexpr):
    """σ of the local logits of row r (= o·k² + u·k + v) for sample b and input channels i: (BLOCK_I,) fp32."""
    logit = tl.zeros(i.shape, dtype=tl.float32)
    for t in tl.static_range(KAPPA):
        src = i + (t - KAPPA // 2)
        f = tl.load(feat_ptr + b * CI + src, mask=i_mask & (src >= 0) & (src < CI), other=0.0)
        logit += tl.load(lw_ptr + r * KAPPA + t) * f
    return tl.sigmoid(logit)


@triton.jit
def _assemble_fwd(tiles_ptr, lw_ptr, feat_ptr, pos_ptr, out_ptr, in_ptr, w_ptr, CI, CO,
                  stb, sto, stu, stv, sti, swb, swo, swu, swv, swi,
                  K: tl.constexpr, KAPPA: tl.constexpr, HAS_POS: tl.constexpr, FOLD: tl.constexpr,
                  BLOCK: tl.constexpr):
    r, b, o, uv, u, v, i, i_mask = _entries(CI, K, BLOCK)
    val = tl.load(tiles_ptr + b * stb + o * sto + u * stu + v * stv + i * sti, mask=i_mask, other=0.0).to(tl.float32)
    val *= _sigma(lw_ptr, feat_ptr, r, b, i, i_mask, CI, KAPPA)
    if HAS_POS:
        val *= tl.load(pos_ptr + b * K * K + uv)
    if FOLD:
        val *= tl.load(out_ptr + b * CO + o) * tl.load(in_ptr + b * CI + i, mask=i_mask, other=0.0)
    tl.store(w_ptr + b * swb + o * swo + u * swu + v * swv + i * swi, val.to(w_ptr.dtype.element_ty), mask=i_mask)


@triton.jit
def _assemble_bwd(grad_ptr, tiles_ptr, lw_ptr, feat_ptr, pos_ptr, out_ptr, in_ptr, q_ptr, gt_ptr, gl_ptr, CI, CO,
                  sgb, sgo, sgu, sgv, sgi, stb, sto, stu, stv, sti, sdb, sdo, sdu, sdv, sdi,
                  K: tl.constexpr, KAPPA: tl.constexpr, HAS_POS: tl.constexpr, FOLD: tl.constexpr,
                  NEED_Q: tl.constexpr, NEED_TILES: tl.constexpr, NEED_LOGITS: tl.constexpr, BLOCK: tl.constexpr):
    r, b, o, uv, u, v, i, i_mask = _entries(CI, K, BLOCK)
    g = tl.load(grad_ptr + b * sgb + o * sgo + u * sgu + v * sgv + i * sgi, mask=i_mask, other=0.0).to(tl.float32)
    tile = tl.load(tiles_ptr + b * stb + o * sto + u * stu + v * stv + i * sti, mask=i_mask, other=0.0)
    tile = tile.to(tl.float32)
    sig = _sigma(lw_ptr, feat_ptr, r, b, i, i_mask, CI, KAPPA)
    entry = (b * CO + o) * K * K * CI + uv * CI + i                    # contiguous (b, Co, k, k, Ci) outputs
    if NEED_Q:
        tl.store(q_ptr + entry, g * tile * sig, mask=i_mask)
    g *= tl.load(out_ptr + b * CO + o)
    if HAS_POS:
        g *= tl.load(pos_ptr + b * K * K + uv)
    if FOLD:
        g *= tl.load(in_ptr + b * CI + i, mask=i_mask, other=0.0)
    g *= sig
    if NEED_TILES:
        tl.store(gt_ptr + b * sdb + o * sdo + u * sdu + v * sdv + i * sdi, g, mask=i_mask)
    if NEED_LOGITS:
        tl.store(gl_ptr + entry, g * tile * (1.0 - sig), mask=i_mask)


def _strides(t):
    """Strides of a (b, Co, k, k, Ci) view, 0 for a broadcast batch of one."""
    strides = list(t.stride())
    if t.shape[0] == 1:
        strides[0] = 0
    return strides


def _small(local_weight, local_feat, pos_att, out_att, in_att):
    as_f32 = [t.float().contiguous() if t is not None else None for t in (local_weight, local_feat, pos_att, out_att,
                                                                        in_att)]
    as_f32[0] = as_f32[0].view(as_f32[0].shape[0], -1)
    return as_f32


def assemble_weight_triton(tiles, local_weight, local_feat, pos_att, out_att, in_att, fold, dtype):
    """W (b, Co, k, k, Ci) contiguous in ``dtype`` from the mixed kernels ``tiles`` (b or 1, Co, k, k, Ci; any strides)
    and the chunk's attentions: local_weight (Co·k², 1, κ), local_feat (b, Ci), pos_att (b, k²) or None,
    out_att (b, Co), in_att (b, Ci)."""
    b, co, k, ci = local_feat.shape[0], out_att.shape[1], tiles.shape[2], local_feat.shape[1]
    lw, feat, pos, out, inp = _small(local_weight, local_feat, pos_att, out_att, in_att)
    weight = torch.empty(b, co, k, k, ci, device=tiles.device, dtype=dtype)
    grid = (co * k * k, triton.cdiv(ci, BLOCK_I), b)
    _assemble_fwd[grid](tiles, lw, feat, pos if pos is not None else out, out, inp, weight, ci, co,
                        *_strides(tiles), *weight.stride(), K=k, KAPPA=lw.shape[1], HAS_POS=pos is not None,
                        FOLD=bool(fold), BLOCK=BLOCK_I)
    return weight


def assemble_weight_backward_triton(grad, tiles, local_weight, local_feat, pos_att, out_att, in_att, fold, need_q,
                                    need_tiles, need_logits):
    """From dW (b, Co, k, k, Ci; any strides and float dtype): Q and d L as contiguous (b, Co, k, k, Ci) fp32, and
    d tiles as a (b, Co, k, k, Ci) fp32 view of a tiled (b, Co·k, Ci·k) buffer; None where not asked for."""
    b, co, k, ci = local_feat.shape[0], out_att.shape[1], tiles.shape[2], local_feat.shape[1]
    lw, feat, pos, out, inp = _small(local_weight, local_feat, pos_att, out_att, in_att)
    device = grad.device
    q = torch.empty(b, co, k, k, ci, device=device) if need_q else None
    d_tiles = torch.empty(b, co, k, ci, k, device=device).transpose(3, 4) if need_tiles else None
    d_logits = torch.empty(b, co, k, k, ci, device=device) if need_logits else None
    if not (need_q or need_tiles or need_logits):
        return q, d_tiles, d_logits
    dummy = out
    grid = (co * k * k, triton.cdiv(ci, BLOCK_I), b)
    _assemble_bwd[grid](grad, tiles, lw, feat, pos if pos is not None else dummy, out, inp,
                        q if need_q else dummy, d_tiles if need_tiles else dummy,
                        d_logits if need_logits else dummy, ci, co, *grad.stride(), *_strides(tiles),
                        *(d_tiles.stride() if need_tiles else (0,) * 5), K=k, KAPPA=lw.shape[1],
                        HAS_POS=pos is not None, FOLD=bool(fold), NEED_Q=need_q, NEED_TILES=need_tiles,
                        NEED_LOGITS=need_logits, BLOCK=BLOCK_I)
    return q, d_tiles, d_logits
