"""CARAFE's content-aware reassembly (Wang et al., ICCV 2019) in pure PyTorch, as the ``torch.library`` custom op
``mmdynconv::carafe`` with the semantics and argument order of ``mmcv.ops.carafe``.

For output pixel (Y, X) of a ×S upsampling, y = ⌊Y/S⌋, x = ⌊X/S⌋, group g = c // (C/G), r = (k−1)/2:

    out[b, c, Y, X] = Σ_{i,j} mask[b, g·k² + i·k + j, Y, X] · feat[b, c, y + i − r, x + j − r]     (0 outside)

Memory-light: no (B, C·k², S·H, S·W) unfold. The forward loops over the k² taps and accumulates a broadcast
product of the shifted low-resolution features with that tap's mask into the output; the backward does the same for
the two gradients. Besides inputs, outputs and their fp32 copies, one output-sized buffer is reused by every tap.
Half-precision inputs accumulate in fp32.
Double backward is not supported.
"""
import torch
import torch.nn.functional as F

from .arguments import check_int
from .compat import custom_op
from .pixel_shuffle import pixel_shuffle, pixel_unshuffle

NAME = 'carafe'
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def carafe(features, masks, kernel_size, group_size, scale_factor):
    """Reassemble ``features`` (B, C, H, W) with ``masks`` (B, G·k², S·H, S·W) into (B, C, S·H, S·W).

    Args:
        features: (B, C, H, W), floating. masks: same dtype and device, normalised or not (CARAFEPack softmaxes
            them over the k² taps). kernel_size: odd k >= 1. group_size: G, dividing C. scale_factor: integer S >= 1.

    Returns:
        (B, C, S·H, S·W) in the features' dtype; differentiable in features and masks (first order).
    """
    _validate(features, masks, kernel_size, group_size, scale_factor)
    return _carafe_op(features, masks, kernel_size, group_size, scale_factor)


def _int(name, value, minimum):
    check_int(NAME, name, value, minimum)


def _validate(features, masks, kernel_size, group_size, scale_factor):
    for name, t in (('features', features), ('masks', masks)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            raise ValueError(f'{NAME}: {name} must be a 4-D tensor, got '
                             f'{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}')
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(f'{NAME}: {name} must be a floating tensor, got {t.dtype}')
    if masks.dtype != features.dtype or masks.device != features.device:
        raise TypeError(f"{NAME}: masks must have the features' dtype and device ({features.dtype}, "
                        f'{features.device}), got ({masks.dtype}, {masks.device})')
    _int('kernel_size', kernel_size, 1)
    if kernel_size % 2 == 0:
        raise ValueError(f'{NAME}: kernel_size must be odd, got {kernel_size}')
    _int('group_size', group_size, 1)
    _int('scale_factor', scale_factor, 1)
    b, c, h, w = features.shape
    if c % group_size:
        raise ValueError(f'{NAME}: group_size ({group_size}) must divide the {c} feature channels')
    expected = (b, group_size * kernel_size ** 2, h * scale_factor, w * scale_factor)
    if tuple(masks.shape) != expected:
        raise ValueError(f'{NAME}: masks must have shape (B, G·k², S·H, S·W) = {expected}, got {tuple(masks.shape)}')


def _views(features, masks, k, group, s):
    """Padded features (B, G, C/G, H+2r, W+2r) and the masks pixel-unshuffled to (B, G, k², S, S, H, W), in the
    accumulation dtype. In this sub-pixel-major layout every product below runs over contiguous rows of W."""
    b, c, h, w = features.shape
    acc = torch.promote_types(features.dtype, torch.float32)
    r = (k - 1) // 2
    padded = F.pad(features.to(acc), (r, r, r, r)).view(b, group, c // group, h + 2 * r, w + 2 * r)
    return padded, pixel_unshuffle(masks.to(acc), s).view(b, group, k * k, s, s, h, w)


def carafe_forward_reference(features, masks, kernel_size, group_size, scale_factor):
    """The tap loop of the forward: (B, C, S·H, S·W). Accumulates the (B, G, C/G, S, S, H, W) pixel-unshuffled
    output, then pixel-shuffles it once."""
    b, c, h, w = features.shape
    k, s = kernel_size, scale_factor
    padded, m = _views(features, masks, k, group_size, s)
    out = padded.new_zeros(b, group_size, c // group_size, s, s, h, w)
    for t in range(k * k):
        i, j = divmod(t, k)
        shifted = padded[:, :, :, None, None, i:i + h, j:j + w]                    # (B, G, C/G, 1, 1, H, W)
        out.addcmul_(shifted, m[:, :, None, t])
    return pixel_shuffle(out.view(b, c * s * s, h, w), s).to(features.dtype)


def carafe_backward_reference(grad, features, masks, kernel_size, group_size, scale_factor, need_features,
                              need_masks):
    """Gradients (features or None, masks or None) of :func:`carafe_forward_reference`."""
    b, c, h, w = features.shape
    k, s, g = kernel_size, scale_factor, group_size
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


@custom_op('mmdynconv::carafe', mutates_args=())
def _carafe_op(features: torch.Tensor, masks: torch.Tensor, kernel_size: int, group_size: int,
               scale_factor: int) -> torch.Tensor:
    return carafe_forward_reference(features, masks, kernel_size, group_size, scale_factor)


@_carafe_op.register_fake
def _carafe_fake(features, masks, kernel_size, group_size, scale_factor):
    b, c, h, w = features.shape
    return features.new_empty(b, c, h * scale_factor, w * scale_factor)


@custom_op('mmdynconv::carafe_backward', mutates_args=())
def _carafe_backward_op(grad: torch.Tensor, features: torch.Tensor, masks: torch.Tensor, kernel_size: int,
                        group_size: int, scale_factor: int, need_features: bool,
                        need_masks: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients (features, masks); one not needed is an empty tensor."""
    grads = carafe_backward_reference(grad, features, masks, kernel_size, group_size, scale_factor, need_features,
                                      need_masks)
    return tuple(features.new_empty(0) if t is None else t for t in grads)


@_carafe_backward_op.register_fake
def _carafe_backward_fake(grad, features, masks, kernel_size, group_size, scale_factor, need_features, need_masks):
    return (torch.empty_like(features, memory_format=torch.contiguous_format) if need_features
            else features.new_empty(0),
            torch.empty_like(masks, memory_format=torch.contiguous_format) if need_masks else features.new_empty(0))


def _setup_context(ctx, inputs, output):
    features, masks, *args = inputs
    ctx.save_for_backward(features, masks)
    ctx.args = args


def _backward(ctx, grad):
    need = ctx.needs_input_grad[:2]
    grads = _carafe_backward_op(grad, *ctx.saved_tensors, *ctx.args, *need)
    return (*(g if n else None for g, n in zip(grads, need)), None, None, None)


def _no_double_backward(ctx, *grads):
    raise NotImplementedError(f'{NAME}: double backward is not supported')


_carafe_op.register_autograd(_backward, setup_context=_setup_context)
_carafe_backward_op.register_autograd(_no_double_backward, setup_context=lambda ctx, inputs, output: None)
