"""SAPA's similarity-aware reassembly (Lu et al., NeurIPS 2022) in pure PyTorch, as the ``torch.library`` custom op
``mmdynconv::sapa``: local attention of every high-resolution query over the k×k low-resolution keys around it.

For output pixel (Y, X) of a ×S upsampling, y = ⌊Y/S⌋, x = ⌊X/S⌋, tap t = i·k + j, r = (k−1)/2:

    logit[b, t, Y, X] = Σ_d query[b, d, Y, X] · key[b, d, y + i − r, x + j − r]        (0 outside the key)
    a[b, :, Y, X]     = softmax over the k² taps of logit[b, :, Y, X]
    out[b, c, Y, X]   = Σ_t a[b, t, Y, X] · value[b, c, y + i − r, x + j − r]          (0 outside the value)

Taps outside the low-resolution map take part in the softmax with logit 0 and contribute a zero value, as the
release's CUDA kernels (github.com/poppinace/sapa) do.

Memory-light: no (B, D·k², H, W) or (B, C·k², S·H, S·W) unfold. The forward loops over the k² taps: each tap's
logits are one broadcast product of the pixel-unshuffled query with the shifted key, summed over D into a
(B, k², S, S, H, W) buffer that is softmax-normalised in place; the reassembly accumulates each tap's shifted value
times its weight into the output (CARAFE's tap loop). Only query, key and value are saved for backward, which
recomputes the weights and loops over the taps again. Half-precision inputs accumulate in fp32. One backend,
``'reference'`` (no Triton kernel). Double backward is not supported.
"""
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .arguments import FLOAT_DTYPES, check_int, check_like, check_tensor
from .backend import resolve_backend
from .compat import NAMESPACE, register_op, reject_double_backward
from .pixel_shuffle import pixel_shuffle, pixel_unshuffle

OP_NAME = 'sapa'
OP_BACKENDS = ('reference',)

__all__ = ['OP_NAME', 'OP_BACKENDS', 'SapaOptions', 'sapa', 'check_sapa_args', 'sapa_functional',
           'sapa_forward_reference',
           'sapa_backward_reference']


class SapaOptions(NamedTuple):
    """The non-tensor arguments of a SAPA call, in the order of the custom op's schema."""
    kernel_size: int    # odd k
    scale_factor: int   # S


def sapa(query, key, value, kernel_size, scale_factor, backend=None):
    """Reassemble ``value`` (B, C, H, W) into (B, C, S·H, S·W) with the softmax of the query-key similarities.

    Args:
        query: (B, D, S·H, S·W), floating. key: (B, D, H, W). value: (B, C, H, W). All three of one dtype and
            device. kernel_size: odd k >= 1. scale_factor: integer S >= 1.
        backend: None (automatic) or 'reference', the only implementation (see :mod:`mmdynconv.ops.backend`).

    Returns:
        (B, C, S·H, S·W) in the inputs' dtype; differentiable in query, key and value (first order).
    """
    options = check_sapa_args(query, key, value, SapaOptions(kernel_size, scale_factor))
    resolve_backend(backend, value.device, OP_NAME, OP_BACKENDS)
    return _sapa_op(query, key, value, *options)


def check_sapa_args(query, key, value, options):
    """``options`` (:class:`SapaOptions`) if the arguments of :func:`sapa` are valid; TypeError / ValueError naming
    the argument otherwise."""
    for name, t in (('query', query), ('key', key), ('value', value)):
        check_tensor(OP_NAME, name, t, FLOAT_DTYPES, ndim=4)
    check_like(OP_NAME, 'query', query, 'value', value, dtype=True)
    check_like(OP_NAME, 'key', key, 'value', value, dtype=True)
    kernel_size, scale_factor = options
    check_int(OP_NAME, 'kernel_size', kernel_size, 1)
    if kernel_size % 2 == 0:
        raise ValueError(f'{OP_NAME}: kernel_size must be odd, got {kernel_size}')
    check_int(OP_NAME, 'scale_factor', scale_factor, 1)
    b, _, h, w = value.shape
    d = key.shape[1]
    if tuple(key.shape) != (b, d, h, w):
        raise ValueError(f"{OP_NAME}: key must have shape (B, D, H, W) = {(b, d, h, w)} (B, H, W: the value's), got "
                         f'{tuple(key.shape)}')
    expected = (b, d, h * scale_factor, w * scale_factor)
    if tuple(query.shape) != expected:
        raise ValueError(f'{OP_NAME}: query must have shape (B, D, S·H, S·W) = {expected}, got {tuple(query.shape)}')
    return options


def _views(query, key, value, k, s):
    """The query pixel-unshuffled to (B, D, S, S, H, W), the key and value zero-padded by r, in the accumulation
    dtype. In this sub-pixel-major layout every product below runs over contiguous rows of W."""
    b, d, h, w = key.shape
    acc = torch.promote_types(value.dtype, torch.float32)
    r = (k - 1) // 2
    q = pixel_unshuffle(query.to(acc), s).view(b, d, s, s, h, w)
    return q, F.pad(key.to(acc), (r, r, r, r)), F.pad(value.to(acc), (r, r, r, r))


def _window(padded, t, k, h, w):
    """Tap t of a padded (B, C, H+2r, W+2r) map, a (B, C, H, W) view: entry (y, x) is (y + i − r, x + j − r)."""
    i, j = divmod(t, k)
    return padded[:, :, i:i + h, j:j + w]


def _shifted(padded, t, k, h, w):
    """:func:`_window` as (B, C, 1, 1, H, W), broadcasting over the S×S sub-pixels."""
    return _window(padded, t, k, h, w)[:, :, None, None]


def _weights(q, key_padded, k):
    """The reassembly weights (B, k², S, S, H, W): the query-key similarity of every tap, softmax-normalised over the
    taps in place."""
    b, d, s, _, h, w = q.shape
    weights = q.new_empty(b, k * k, s, s, h, w)
    product = torch.empty_like(q)
    for t in range(k * k):
        torch.mul(q, _shifted(key_padded, t, k, h, w), out=product)
        torch.sum(product, 1, out=weights[:, t])
    weights.sub_(weights.amax(1, keepdim=True)).exp_()
    return weights.div_(weights.sum(1, keepdim=True))


def sapa_forward_reference(query, key, value, options: SapaOptions):
    """The tap loops of the forward: (B, C, S·H, S·W). Accumulates the (B, C, S, S, H, W) pixel-unshuffled output,
    then pixel-shuffles it once."""
    k, s = options
    b, c, h, w = value.shape
    q, key_padded, value_padded = _views(query, key, value, k, s)
    weights = _weights(q, key_padded, k)
    out = value_padded.new_zeros(b, c, s, s, h, w)
    for t in range(k * k):
        out.addcmul_(_shifted(value_padded, t, k, h, w), weights[:, None, t])
    return pixel_shuffle(out.view(b, c * s * s, h, w), s).to(value.dtype)


def _scatter_taps(target, source, weight):
    """target (B, C, H, W) += Σ over the S×S sub-pixels of source (B, C, S, S, H, W) · weight (B, 1, S, S, H, W)."""
    s = source.shape[2]
    for p in range(s):
        for p2 in range(s):
            target.addcmul_(source[:, :, p, p2], weight[:, :, p, p2])


def sapa_backward_reference(grad, query, key, value, options: SapaOptions, needs):
    """Gradients (query, key, value) of :func:`sapa_forward_reference` for the output gradient ``grad``
    (B, C, S·H, S·W); one not asked for in ``needs`` (three bools) is None."""
    k, s = options
    b, c, h, w = value.shape
    d = key.shape[1]
    r = (k - 1) // 2
    need_query, need_key, need_value = needs
    q, key_padded, value_padded = _views(query, key, value, k, s)
    weights = _weights(q, key_padded, k)
    go = pixel_unshuffle(grad.to(q.dtype), s).view(b, c, s, s, h, w)
    grad_value = torch.zeros_like(value_padded) if need_value else None
    grad_logits = weights.new_empty(weights.shape) if need_query or need_key else None
    product = torch.empty_like(go) if grad_logits is not None else None
    for t in range(k * k):
        if need_value:      # Σ over the sub-pixels of grad · weight_t, shifted back
            _scatter_taps(_window(grad_value, t, k, h, w), go, weights[:, t:t + 1])
        if grad_logits is not None:     # d out / d weight_t: Σ over the channels of grad · shifted value
            torch.mul(go, _shifted(value_padded, t, k, h, w), out=product)
            torch.sum(product, 1, out=grad_logits[:, t])
    gq = gk = None
    if grad_logits is not None:
        # softmax backward: grad_logit_t = a_t · (grad_a_t − Σ_u a_u · grad_a_u)
        dot = weights.new_zeros(b, 1, s, s, h, w)
        for t in range(k * k):
            dot.addcmul_(weights[:, t:t + 1], grad_logits[:, t:t + 1])
        grad_logits.sub_(dot).mul_(weights)
        grad_q = torch.zeros_like(q) if need_query else None
        grad_key = torch.zeros_like(key_padded) if need_key else None
        for t in range(k * k):
            if need_query:
                grad_q.addcmul_(_shifted(key_padded, t, k, h, w), grad_logits[:, None, t])
            if need_key:
                _scatter_taps(_window(grad_key, t, k, h, w), q, grad_logits[:, t:t + 1])
        if need_query:
            gq = pixel_shuffle(grad_q.view(b, d * s * s, h, w), s).to(query.dtype)
        if need_key:
            gk = grad_key[:, :, r:r + h, r:r + w].to(key.dtype)
    gv = grad_value[:, :, r:r + h, r:r + w].to(value.dtype) if need_value else None
    return gq, gk, gv


def _forward(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, kernel_size: int,
             scale_factor: int) -> torch.Tensor:
    return sapa_forward_reference(query, key, value, SapaOptions(kernel_size, scale_factor))


def _fake(query, key, value, kernel_size, scale_factor):
    b, c, h, w = value.shape
    return value.new_empty(b, c, h * scale_factor, w * scale_factor)


def _backward_impl(grad: torch.Tensor, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, kernel_size: int,
                   scale_factor: int, need_query: bool, need_key: bool,
                   need_value: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (query, key, value); one not needed is an empty tensor."""
    grads = sapa_backward_reference(grad, query, key, value, SapaOptions(kernel_size, scale_factor),
                                    (need_query, need_key, need_value))
    return tuple(value.new_empty(0) if g is None else g for g in grads)


def _backward_fake(grad, query, key, value, kernel_size, scale_factor, need_query, need_key, need_value):
    return tuple(torch.empty_like(t, memory_format=torch.contiguous_format) if need else value.new_empty(0)
                 for t, need in ((query, need_query), (key, need_key), (value, need_value)))


def _setup_context(ctx, inputs, output):
    query, key, value, *args = inputs
    ctx.save_for_backward(query, key, value)
    ctx.args = args  # kernel_size, scale_factor


def _backward(ctx, grad):
    needs = ctx.needs_input_grad[:3]
    grads = _sapa_backward_op(grad, *ctx.saved_tensors, *ctx.args, *needs)
    return (*(g if n else None for g, n in zip(grads, needs)), None, None)


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


_sapa_op = register_op(f'{NAMESPACE}::{OP_NAME}', _forward, _fake, _backward, _setup_context, sapa_functional)
_sapa_backward_op = register_op(f'{NAMESPACE}::{OP_NAME}_backward', _backward_impl, _backward_fake,
                                reject_double_backward(OP_NAME))
