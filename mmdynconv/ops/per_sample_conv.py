"""Per-sample convolution: every sample of a batch convolved with its own kernel, as one grouped convolution.

``y[b] = conv2d(x[b], W[b], stride, padding, dilation, groups)`` for a chunk of samples ``rows`` at a time.

Shapes (G = groups, Cig = Ci / G, Cog = Co / G):

- x: (B, Ci, H, W); y: (b, Co, Ho, Wo) for the b samples of ``rows``;
- per-sample kernels W: (b, Co, kh, kw, Cig), any strides. This is the layout of a channels-last conv weight; a
  kernel held as (b, Co, Cig, kh, kw) is passed as its view ``w.permute(0, 1, 3, 4, 2)`` at no cost, because the
  convolution reads W through the inverse permutation (:func:`_conv_weight`).

How: the b samples become one convolution with groups = b·G over the (1, b·Ci, H, W) view of the input, whose
(b·Co, Cig, kh, kw) weight is the stack of the samples' kernels; 1×1 kernels without padding run as batched matmuls
(stride by subsampling). Gradients (:func:`per_sample_conv_backward`) come from ``aten.convolution_backward`` on the
same grouped problem, so callers can recompute W chunk by chunk instead of saving it. Used by FDConv's lean op and by
the kernel-mixture op (CondConv, DY-Conv, ODConv). Torch only.
"""
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .arguments import check_pair
from .compat import autocast_dtype

__all__ = ['ConvGeometry', 'check_conv_geometry', 'ConvShape', 'conv_out_size', 'sample_chunks', 'conv_dtype',
           'per_sample_conv_forward', 'per_sample_conv_backward']


class ConvGeometry(NamedTuple):
    """The non-tensor arguments of a convolution, as ``nn.Conv2d`` takes them: pairs of ints and the group count."""
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1


def check_conv_geometry(owner, stride, padding, dilation, groups=1):
    """A :class:`ConvGeometry` of ints or pairs (padding >= 0, stride and dilation >= 1); TypeError / ValueError
    naming the argument otherwise. ``groups`` is passed through: whether it divides the channels is the op's check."""
    return ConvGeometry(check_pair(owner, 'stride', stride, 1), check_pair(owner, 'padding', padding, 0),
                        check_pair(owner, 'dilation', dilation, 1), groups)


def conv_out_size(size, k, stride, padding, dilation):
    """Output length of a convolution along one axis."""
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def sample_chunks(batch, per_sample, budget, max_chunks):
    """Slices cutting ``batch`` samples into chunks of about ``budget // per_sample`` samples (at least one sample per
    chunk, at most ``max_chunks`` chunks)."""
    step = max(1, budget // per_sample, -(-batch // max_chunks))
    return [slice(s, min(s + step, batch)) for s in range(0, batch, step)]


def conv_dtype(x):
    """The dtype the convolution runs in: the autocast dtype when autocast is on for x's device, else x's dtype."""
    return autocast_dtype(x.device.type) or x.dtype


class ConvShape:
    """Shapes and conv arguments of a per-sample convolution.

    Args:
        x_shape: (B, Ci, H, W). co: Co. kernel, stride, padding, dilation: pairs of ints. groups: G, dividing Ci and Co.
    """

    def __init__(self, x_shape, co, kernel, stride, padding, dilation, groups=1):
        self.b, self.ci, self.h, self.w = x_shape
        self.co, self.groups = co, groups
        self.cig = self.ci // groups
        self.kh, self.kw = kernel
        self.stride, self.padding, self.dilation = tuple(stride), tuple(padding), tuple(dilation)
        self.ho = conv_out_size(self.h, self.kh, stride[0], padding[0], dilation[0])
        self.wo = conv_out_size(self.w, self.kw, stride[1], padding[1], dilation[1])
        self.entries = co * self.cig * self.kh * self.kw     # kernel entries per sample
        self.pointwise = tuple(kernel) == (1, 1) and self.padding == (0, 0)

    def conv_args(self):
        return list(self.stride), list(self.padding), list(self.dilation)


def _grouped(t, rows):
    """(B, C, H, W)[rows] as the (1, b·C, H, W) input of a convolution with groups = b·G."""
    t = t[rows]
    return t.reshape(1, -1, *t.shape[2:])


def _conv_weight(weight, s):
    """(b, Co, kh, kw, Cig) -> the grouped convolution's (b·Co, Cig, kh, kw) weight (a view where the strides allow)."""
    return weight.permute(0, 1, 4, 2, 3).reshape(-1, s.cig, s.kh, s.kw)


def _subsample(t, s):
    """The input pixels a 1×1 convolution without padding reads: (b, C, Ho, Wo)."""
    return t if s.stride == (1, 1) else t[:, :, ::s.stride[0], ::s.stride[1]]


def _pointwise_pixels(inp, rows, s):
    """(b·G, Cig, Ho·Wo) pixels of samples ``rows`` read by a 1×1 convolution."""
    pixels = _subsample(inp[rows], s)
    return pixels.reshape(pixels.shape[0] * s.groups, s.cig, -1)


def per_sample_conv_forward(inp, weight, rows, s):
    """Samples ``rows`` of ``inp`` (B, Ci, H, W) convolved with their kernels ``weight`` (b, Co, kh, kw, Cig):
    (b, Co, Ho, Wo), contiguous, in the common dtype of inp and weight."""
    b = weight.shape[0]
    cog = s.co // s.groups
    if s.pointwise:
        out = torch.bmm(weight.reshape(b * s.groups, cog, s.cig), _pointwise_pixels(inp, rows, s))
        return out.view(b, s.co, s.ho, s.wo)
    # a channels-last weight can give a channels-last output: keep the (b, Co, Ho, Wo) result contiguous
    return F.conv2d(_grouped(inp, rows), _conv_weight(weight, s), None, s.stride, s.padding, s.dilation,
                    groups=b * s.groups).contiguous().view(b, s.co, s.ho, s.wo)


def per_sample_conv_backward(inp, rows, weight, grad_input_from, grad_weight_from, s):
    """Gradients of :func:`per_sample_conv_forward` for samples ``rows``.

    Returns (d input (b, Ci, H, W) from ``grad_input_from`` (b, Co, Ho, Wo) and ``weight`` (b, Co, kh, kw, Cig),
    d kernels (b, Co, kh, kw, Cig) — a view of a (b, Co, Cig, kh, kw) tensor — from ``grad_weight_from``
    (b, Co, Ho, Wo)); either source may be None, and so is then its gradient. ``weight`` is unused without
    ``grad_input_from``.
    """
    gi = gw = None
    cog = s.co // s.groups
    if s.pointwise:
        b = inp[rows].shape[0]
        bg = b * s.groups
        if grad_input_from is not None:
            gi = torch.bmm(weight.reshape(bg, cog, s.cig).transpose(1, 2), grad_input_from.reshape(bg, cog, -1))
            gi = gi.view(b, s.ci, s.ho, s.wo)
            if s.stride != (1, 1):
                full = gi.new_zeros(b, s.ci, s.h, s.w)
                _subsample(full, s).copy_(gi)
                gi = full
        if grad_weight_from is not None:
            pixels = _pointwise_pixels(inp, rows, s)
            gw = torch.bmm(grad_weight_from.reshape(bg, cog, -1), pixels.transpose(1, 2)).view(b, s.co, 1, 1, s.cig)
        return gi, gw
    stride, padding, dilation = s.conv_args()
    inp_c = _grouped(inp, rows)
    b = inp_c.shape[1] // s.ci
    groups = b * s.groups
    shape = (b * s.co, s.cig, s.kh, s.kw)
    if grad_input_from is not None and grad_input_from is grad_weight_from:
        gi, gw, _ = torch.ops.aten.convolution_backward(
            _grouped(grad_input_from, slice(None)), inp_c, _conv_weight(weight, s), None, stride, padding, dilation,
            False, [0, 0], groups, [True, True, False])
    else:
        if grad_input_from is not None:
            gi = torch.ops.aten.convolution_backward(
                _grouped(grad_input_from, slice(None)), inp_c, _conv_weight(weight, s), None, stride, padding,
                dilation, False, [0, 0], groups, [True, False, False])[0]
        if grad_weight_from is not None:
            gw = torch.ops.aten.convolution_backward(
                _grouped(grad_weight_from, slice(None)), inp_c, inp_c.new_empty(1).expand(shape), None, stride,
                padding, dilation, False, [0, 0], groups, [False, True, False])[1]
    if gi is not None:
        gi = gi.view(b, s.ci, s.h, s.w)
    if gw is not None:
        gw = gw.view(b, s.co, s.cig, s.kh, s.kw).permute(0, 1, 3, 4, 2)   # (b, Co, kh, kw, Cig) view
    return gi, gw
