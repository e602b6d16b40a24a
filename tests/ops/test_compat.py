"""compat.register_op, the one way ops register: a torch.library custom op on torch >= 2.4 and an autograd.Function
before, with the same values, gradients and double-backward refusal on both (run on the floor venv too)."""
import pytest
import torch
from torch_support import needs_custom_ops

from mmdynconv.ops.compat import HAS_CUSTOM_OP, register_op, reject_double_backward


def _forward(x: torch.Tensor, scale: float) -> torch.Tensor:
    return x * x * scale


def _fake(x, scale):
    return torch.empty_like(x)


def _backward_impl(grad: torch.Tensor, x: torch.Tensor, scale: float) -> torch.Tensor:
    return 2 * scale * grad * x


def _backward_fake(grad, x, scale):
    return torch.empty_like(x)


def _setup_context(ctx, inputs, output):
    x, ctx.scale = inputs
    ctx.save_for_backward(x)


def _backward(ctx, grad):
    (x,) = ctx.saved_tensors
    return _square_backward(grad, x, ctx.scale), None


_square = register_op('mmdynconv_test::scaled_square', _forward, _fake, _backward, _setup_context)
_square_backward = register_op('mmdynconv_test::scaled_square_backward', _backward_impl, _backward_fake,
                               reject_double_backward('scaled_square'))


def test_registered_op_values_and_gradient():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = _square(x, 1.5)
    torch.testing.assert_close(y, x.detach() ** 2 * 1.5)
    (gx,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(gx, 3 * x.detach())
    torch.autograd.gradcheck(lambda t: _square(t, 1.5), (x,))


def test_double_backward_is_refused_naming_the_op():
    x = torch.randn(3, requires_grad=True)
    (gx,) = torch.autograd.grad(_square(x, 2.0).sum(), x, create_graph=True)
    with pytest.raises(NotImplementedError, match='scaled_square: double backward'):
        gx.sum().backward()


def test_custom_op_only_where_torch_has_it():
    assert hasattr(torch.ops.mmdynconv_test, 'scaled_square') == HAS_CUSTOM_OP


@needs_custom_ops
def test_registered_op_passes_opcheck():
    x = torch.randn(3, 4, requires_grad=True)
    result = torch.library.opcheck(torch.ops.mmdynconv_test.scaled_square.default, (x, 0.5))
    assert set(result.values()) == {'SUCCESS'}, result
    result = torch.library.opcheck(torch.ops.mmdynconv_test.scaled_square_backward.default,
                                   (torch.randn(3, 4), x.detach(), 0.5))
    assert set(result.values()) == {'SUCCESS'}, result


@needs_custom_ops
def test_fake_implementation_gives_the_shape():
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        y = _square(torch.empty(2, 5), 1.0)
    assert y.shape == (2, 5)
