"""mmdynconv.ops.pixel_shuffle: torch's pixel (un)shuffle, with the documented shapes and a backward also for
zero-element tensors (torch's CPU ``pixel_unshuffle`` returns those in the input's shape)."""
import pytest
import torch
import torch.nn.functional as F

from mmdynconv.ops.pixel_shuffle import pixel_shuffle, pixel_unshuffle, shuffle_by_reshape, unshuffle_by_reshape


@pytest.mark.parametrize('scale', [1, 2, 3])
def test_reshape_forms_equal_torch(scale):
    x = torch.randn(2, 5 * scale * scale, 3, 4)
    assert torch.equal(shuffle_by_reshape(x, scale), F.pixel_shuffle(x, scale))
    y = torch.randn(2, 5, 3 * scale, 4 * scale)
    assert torch.equal(unshuffle_by_reshape(y, scale), F.pixel_unshuffle(y, scale))


def test_non_empty_tensors_go_through_torch():
    x = torch.randn(2, 8, 3, 5).contiguous(memory_format=torch.channels_last)
    assert torch.equal(pixel_shuffle(x, 2), F.pixel_shuffle(x, 2))
    assert torch.equal(pixel_unshuffle(x, 1), F.pixel_unshuffle(x, 1))


@pytest.mark.parametrize('shape', [(0, 12, 3, 5), (2, 0, 3, 5), (2, 12, 0, 5)])
def test_empty_tensors_have_the_documented_shapes_and_backward(shape):
    b, c, h, w = shape
    x = torch.zeros(shape, requires_grad=True)
    y = pixel_shuffle(x, 2)
    assert y.shape == (b, c // 4, 2 * h, 2 * w)
    y.sum().backward()
    assert x.grad.shape == shape
    z = torch.zeros(b, c, 2 * h, 2 * w, requires_grad=True)
    u = pixel_unshuffle(z, 2)
    assert u.shape == (b, 4 * c, h, w)
    u.sum().backward()
    assert z.grad.shape == z.shape
