"""``F.pixel_shuffle`` and ``F.pixel_unshuffle`` that also handle zero-element tensors (an empty batch).

On the CPU, torch's ``pixel_unshuffle`` hands a zero-element input back in the input's shape instead of the
documented (B, C·S², H/S, W/S) (torch 2.1 to 2.13; pytorch/pytorch pull request 192816), and the backward of
``pixel_shuffle`` is a ``pixel_unshuffle``, so an empty batch breaks both. For zero-element tensors these functions
rearrange with reshape and permute (:func:`shuffle_by_reshape`, :func:`unshuffle_by_reshape`), which give the
documented shapes and back-propagate; every other tensor goes through torch's functions unchanged. Torch only.
"""
import torch.nn.functional as F

__all__ = ['pixel_shuffle', 'pixel_unshuffle', 'shuffle_by_reshape', 'unshuffle_by_reshape']


def pixel_shuffle(x, scale):
    """(B, C·S², H, W) -> (B, C, S·H, S·W), as ``F.pixel_shuffle``."""
    return F.pixel_shuffle(x, scale) if x.numel() else shuffle_by_reshape(x, scale)


def pixel_unshuffle(x, scale):
    """(B, C, S·H, S·W) -> (B, C·S², H, W), as ``F.pixel_unshuffle``."""
    return F.pixel_unshuffle(x, scale) if x.numel() else unshuffle_by_reshape(x, scale)


def shuffle_by_reshape(x, scale):
    """``F.pixel_shuffle`` as reshape, permute, reshape: out[b, c, S·h + p, S·w + q] = x[b, c·S² + p·S + q, h, w]."""
    b, c, h, w = x.shape
    c //= scale * scale
    return x.reshape(b, c, scale, scale, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c, h * scale, w * scale)


def unshuffle_by_reshape(x, scale):
    """The inverse of :func:`shuffle_by_reshape`, as ``F.pixel_unshuffle``."""
    b, c, h, w = x.shape
    h //= scale
    w //= scale
    return x.reshape(b, c, h, scale, w, scale).permute(0, 1, 3, 5, 2, 4).reshape(b, c * scale * scale, h, w)
