"""CARAFE's content-aware reassembly (Wang et al., ICCV 2019) in pure PyTorch, as the ``torch.library`` custom op
``mmdynconv::carafe`` with the semantics and argument order of ``mmcv.ops.carafe``.

For output pixel (Y, X) of a ×S upsampling, y = ⌊Y/S⌋, x = ⌊X/S⌋, group g = c // (C/G), r = (k−1)/2:

    out[b, c, Y, X] = Σ_{i,j} mask[b, g·k² + i·k + j, Y, X] · feat[b, c, y + i − r, x + j − r]     (0 outside)

Memory-light: no (B, C·k², S·H, S·W) unfold. The forward loops over the k² taps and accumulates a broadcast
product of the shifted low-resolution features with that tap's mask into the output; the backward does the same for
the two gradients. Besides inputs, outputs and their fp32 copies, one output-sized buffer is reused by every tap.
Half-precision inputs accumulate in fp32. One backend, ``'reference'`` (no Triton kernel).
Double backward is not supported.
"""
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .arguments import FLOAT_DTYPES, check_int, check_like, check_tensor
from .backend import resolve_backend
from .compat import NAMESPACE, register_op, reject_double_backward
from .pixel_shuffle import pixel_shuffle, pixel_unshuffle

OP_NAME = 'carafe'
OP_BACKENDS = ('reference',)

__all__ = ['OP_NAME', 'OP_BACKENDS', 'CarafeOptions', 'carafe', 'check_carafe_args', 'carafe_functional',
           'carafe_forward_reference',
           'carafe_backward_reference']


class CarafeOptions(NamedTuple):
    """The non-tensor arguments of a CARAFE call, in the order of the custom op's schema."""
    kernel_size: int    # odd k
    group_size: int     # G, dividing C
    scale_factor: int   # S


def carafe(features, masks, kernel_size, group_size, scale_factor, backend=None):
    """Reassemble ``features`` (B, C, H, W) with ``masks`` (B, G·k², S·H, S·W) into (B, C, S·H, S·W).

    Args:
        features: (B, C, H, W), floating. masks: same dtype and device, normalised or not (CARAFEPack softmaxes
            them over the k² taps). kernel_size: odd k >= 1. group_size: G, dividing C. scale_factor: integer S >= 1.
        backend: None (automatic) or 'reference', the only implementation (see :mod:`mmdynconv.ops.backend`).

    Returns:
        (B, C, S·H, S·W) in the features' dtype; differentiable in features and masks (first order).
    """
    options = check_carafe_args(features, masks, CarafeOptions(kernel_size, group_size, scale_factor))
    resolve_backend(backend, features.device, OP_NAME, OP_BACKENDS)
    return _carafe_op(features, masks, *options)


def check_carafe_args(features, masks, options):
    """``options`` (:class:`CarafeOptions`) if the arguments of :func:`carafe` are valid; TypeError / ValueError
    naming the argument otherwise."""
    check_tensor(OP_NAME, 'features', features, FLOAT_DTYPES, ndim=4)
    check_tensor(OP_NAME, 'masks', masks, FLOAT_DTYPES, ndim=4)
    check_like(OP_NAME, 'masks', masks, 'features', features, dtype=True)
    kernel_size, group_size, scale_factor = options
    check_int(OP_NAME, 'kernel_size', kernel_size, 1)
    if kernel_size % 2 == 0:
        raise ValueError(f'{OP_NAME}: kernel_size must be odd, got {kernel_size}')
    check_int(OP_NAME, 'group_size', group_size, 1)
    check_int(OP_NAME, 'scale_factor', scale_factor, 1)
    b, c, h, w = features.shape
    if c % group_size:
        raise ValueError(f'{OP_NAME}: group_size ({group_size}) must divide the {c} feature channels')
    expected = (b, group_size * kernel_size ** 2, h * scale_factor, w * scale_factor)
    if tuple(masks.shape) != expected:
        raise ValueError(f'{OP_NAME}: masks must have shape (B, G·k², S·H, S·W) = {expected}, got '
                         f'{tuple(masks.shape)}')
    return options


def _views(features, masks, k, group, s):
    """Padded features (B, G, C/G, H+2r, W+2r) and the masks pixel-unshuffled to (B, G, k², S, S, H, W), in the
    accumulation dtype. In this sub-pixel-major layout every product below runs over contiguous rows of W."""
    b, c, h, w = features.shape
    acc = torch.promote_types(features.dtype, torch.float32)
    r = (k - 1) // 2
    padded = F.pad(features.to(acc), (r, r, r, r)).view(b, group, c // group, h + 2 * r, w + 2 * r)
    return padded, pixel_unshuffle(masks.to(acc), s).view(b, group, k * k, s, s, h, w)


def carafe_forward_reference(features, masks, options: CarafeOptions):
    """The tap loop of the forward: (B, C, S·H, S·W). Accumulates the (B, G, C/G, S, S, H, W) pixel-unshuffled
    output, then pixel-shuffles it once."""
    b, c, h, w = features.shape
    k, group_size, s = options
    padded, m = _views(features, masks, k, group_size, s)
    out = padded.new_zeros(b, group_size, c // group_size, s, s, h, w)
    for t in range(k * k):
        i, j = divmod(t, k)
        shifted = padded[:, :, :, None, None, i:i + h, j:j + w]                    # (B, G, C/G, 1, 1, H, W)
        out.addcmul_(shifted, m[:, :, None, t])
    return pixel_shuffle(out.view(b, c * s * s, h, w), s).to(features.dtype)


def carafe_backward_reference(grad, features, masks, options: CarafeOptions, needs):
    """Gradients (features, masks) of :func:`carafe_forward_reference` for the output gradient ``grad``
    (B, C, S·H, S·W); one not asked for in ``needs`` (two bools) is None."""
    b, c, h, w = features.shape
    k, g, s = options
    need_features, need_masks = needs
    r = (k - 1) // 2
    padded, m = _views(features, masks, k, g, s)
    go = pixel_unshuffle(grad.to(padded.dtype), s).view(b, g, c // g, s, s, h, w)
    grad_padded = torch.zeros_like(padded) if need_features else None
    grad_m = padded.new_empty(b, g, k * k, s, s, h, w) if need_masks else None
    product = torch.empty_like(go) if need_masks else None
    for t in range(k * k):
        i, j = divmod(t, k)
        if need_features:   # Σ over the S×S sub-pixels of grad · mask_t, shifted back
            target = grad_padded[:, :, :, i:i + h, j:j + w]
            for p in range(s):
                for q in range(s):
                    target.addcmul_(go[:, :, :, p, q], m[:, :, t:t + 1, p, q])
        if need_masks:      # Σ over the group's channels of grad · shifted features
            torch.mul(go, padded[:, :, :, None, None, i:i + h, j:j + w], out=product)
            torch.sum(product, 2, out=grad_m[:, :, t])
    gf = grad_padded[:, :, :, r:r + h, r:r + w].reshape(b, c, h, w).to(features.dtype) if need_features else None
    gm = pixel_shuffle(grad_m.view(b, g * k * k * s * s, h, w), s).to(masks.dtype) if need_masks else None
    return gf, gm


def _forward(features: torch.Tensor, masks: torch.Tensor, kernel_size: int, group_size: int,
             scale_factor: int) -> torch.Tensor:
    return carafe_forward_reference(features, masks, CarafeOptions(kernel_size, group_size, scale_factor))


def _fake(features, masks, kernel_size, group_size, scale_factor):
    b, c, h, w = features.shape
    return features.new_empty(b, c, h * scale_factor, w * scale_factor)


def _backward_impl(grad: torch.Tensor, features: torch.Tensor, masks: torch.Tensor, kernel_size: int,
                   group_size: int, scale_factor: int, need_features: bool,
                   need_masks: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients (features, masks); one not needed is an empty tensor."""
    grads = carafe_backward_reference(grad, features, masks, CarafeOptions(kernel_size, group_size, scale_factor),
                                      (need_features, need_masks))
    return tuple(features.new_empty(0) if t is None else t for t in grads)


def _backward_fake(grad, features, masks, kernel_size, group_size, scale_factor, need_features, need_masks):
    return (torch.empty_like(features, memory_format=torch.contiguous_format) if need_features
            else features.new_empty(0),
            torch.empty_like(masks, memory_format=torch.contiguous_format) if need_masks else features.new_empty(0))


def _setup_context(ctx, inputs, output):
    features, masks, *args = inputs
    ctx.save_for_backward(features, masks)
    ctx.args = args  # kernel_size, group_size, scale_factor


def _backward(ctx, grad):
    needs = ctx.needs_input_grad[:2]
    grads = _carafe_backward_op(grad, *ctx.saved_tensors, *ctx.args, *needs)
    return (*(g if n else None for g, n in zip(grads, needs)), None, None, None)


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


_carafe_op = register_op(f'{NAMESPACE}::{OP_NAME}', _forward, _fake, _backward, _setup_context, carafe_functional)
_carafe_backward_op = register_op(f'{NAMESPACE}::{OP_NAME}_backward', _backward_impl, _backward_fake,
                                  reject_double_backward(OP_NAME))
