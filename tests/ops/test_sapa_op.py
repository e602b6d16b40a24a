"""mmdynconv.ops.sapa against an unfold oracle written here (values and gradients, float64), its export form, memory
use, low precision, the op pattern and errors."""
import importlib

import pytest
import torch
import torch.nn.functional as F
from torch_support import needs_custom_ops

import mmdynconv.ops
from mmdynconv.ops.sapa import sapa, sapa_functional


def sapa_unfold(query, key, value, k, s):
    """Unfold key and value into (B, ·, k², H, W) with zero padding, repeat every low-resolution pixel S×S times,
    softmax the query-key products over the k² taps and weight the values."""
    b, d, h, w = key.shape
    c = value.shape[1]

    def neighbours(t, channels):
        cols = F.unfold(t, k, padding=(k - 1) // 2).view(b, channels, k * k, h, w)
        return cols.repeat_interleave(s, dim=3).repeat_interleave(s, dim=4)      # (B, ·, k², S·H, S·W)

    weights = (query[:, :, None] * neighbours(key, d)).sum(1).softmax(1)          # (B, k², S·H, S·W)
    return (neighbours(value, c) * weights[:, None]).sum(2)


def inputs(b, d, c, h, w, s, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes = ((b, d, s * h, s * w), (b, d, h, w), (b, c, h, w))
    return tuple(torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype).requires_grad_() for shape in shapes)


def _close(actual, expected, tol):
    if not expected.numel():
        assert actual.shape == expected.shape
        return
    scale = expected.detach().double().abs().max().clamp_min(1e-12)
    assert float((actual.detach().double() - expected.detach().double()).abs().max() / scale) < tol


CASES = [(2, 3, 4, 5, 7, 5, 2), (1, 8, 2, 4, 3, 3, 3), (2, 4, 6, 6, 6, 1, 2), (1, 2, 3, 1, 2, 5, 2),
         (2, 4, 5, 4, 5, 3, 1), (1, 3, 2, 3, 3, 7, 2), (2, 5, 3, 2, 9, 3, 2)]


@pytest.mark.parametrize('b,d,c,h,w,k,s', CASES)
def test_sapa_matches_unfold_oracle(b, d, c, h, w, k, s):
    query, key, value = inputs(b, d, c, h, w, s)
    y = sapa(query, key, value, k, s)
    ref = sapa_unfold(query, key, value, k, s)
    assert y.shape == (b, c, s * h, s * w)
    _close(y, ref, 1e-12)
    grad = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for got, want in zip(torch.autograd.grad(y, (query, key, value), grad),
                         torch.autograd.grad(ref, (query, key, value), grad)):
        _close(got, want, 1e-12)


@pytest.mark.parametrize('wanted', [(0,), (1,), (2,), (0, 2)], ids=['query', 'key', 'value', 'query+value'])
def test_sapa_gradients_of_some_inputs(wanted):
    tensors = inputs(2, 3, 4, 3, 5, 2)
    grad = torch.randn(2, 4, 6, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = torch.autograd.grad(sapa_unfold(*tensors, 3, 2), tensors, grad)
    args = [t if i in wanted else t.detach() for i, t in enumerate(tensors)]
    got = torch.autograd.grad(sapa(*args, 3, 2), [args[i] for i in wanted], grad)
    for i, g in zip(wanted, got):
        _close(g, expected[i], 1e-12)


def test_sapa_weights_sum_to_one_and_borders_count_with_similarity_zero():
    """A constant value passes through wherever all k² taps lie inside the map; at the border the out-of-map taps
    keep the weight exp(0) / Σ (similarity 0, value 0), as the release's kernels."""
    query, key, _ = inputs(1, 2, 1, 4, 4, 2)
    value = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    out = sapa(query.detach(), key.detach(), value, 3, 2)
    _close(out[:, :, 2:6, 2:6], torch.ones(1, 1, 4, 4, dtype=torch.float64), 1e-14)
    query = torch.zeros_like(query)          # every similarity 0: uniform weights 1/9 over the taps
    corner = sapa(query, key.detach(), value, 3, 2)[0, 0, 0, 0]
    assert abs(float(corner) - 4 / 9) < 1e-14


def test_sapa_empty_batch():
    query, key, value = inputs(0, 3, 4, 3, 5, 2)
    out = sapa(query, key, value, 3, 2)
    assert out.shape == (0, 4, 6, 10)
    out.sum().backward()
    assert query.grad.shape == query.shape and key.grad.shape == key.shape and value.grad.shape == value.shape


@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-5), (torch.bfloat16, 3e-2), (torch.float16, 3e-3)])
def test_sapa_low_precision(dtype, tol):
    query, key, value = inputs(2, 8, 6, 6, 5, 2, dtype=dtype)
    y = sapa(query, key, value, 5, 2)
    assert y.dtype == dtype
    ref = sapa_unfold(*(t.detach().double() for t in (query, key, value)), 5, 2)
    _close(y, ref, tol)
    grads = torch.autograd.grad(y.float().sum(), (query, key, value))
    assert all(g.dtype == dtype for g in grads)


def test_sapa_saves_only_its_inputs():
    """Only query, key and value are saved for backward (no unfold, no weights: the backward recomputes them)."""
    query, key, value = inputs(1, 16, 16, 8, 8, 2, dtype=torch.float32)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        sapa(query, key, value, 5, 2)
    assert sum(saved) == query.numel() + key.numel() + value.numel()


def test_sapa_non_contiguous_inputs():
    query, key, value = inputs(2, 3, 4, 4, 5, 2)
    expected = sapa(query, key, value, 3, 2)
    q2 = query.detach().contiguous(memory_format=torch.channels_last)
    k2 = torch.zeros(2, 6, 4, 7, dtype=torch.float64)[:, ::2, :, 1:6]
    k2.copy_(key.detach())
    v2 = value.detach().transpose(2, 3).contiguous().transpose(2, 3)
    _close(sapa(q2, k2, v2, 3, 2), expected, 1e-14)


@pytest.mark.parametrize('b,d,c,h,w,k,s', CASES[:4])
def test_export_form_matches_the_op(b, d, c, h, w, k, s):
    query, key, value = (t.detach() for t in inputs(b, d, c, h, w, s))
    _close(sapa_functional(query, key, value, k, s), sapa(query, key, value, k, s), 1e-13)


@needs_custom_ops
def test_sapa_custom_op_passes_opcheck():
    query, key, value = inputs(1, 3, 2, 3, 4, 2, dtype=torch.float32)
    result = torch.library.opcheck(torch.ops.mmdynconv.sapa.default, (query, key, value, 3, 2))
    assert set(result.values()) == {'SUCCESS'}, result


@needs_custom_ops
def test_sapa_module_follows_the_op_pattern():
    module = importlib.import_module('mmdynconv.ops.sapa')
    assert module.OP_NAME == 'sapa' and module.OP_BACKENDS == ('reference',)
    assert {'OP_NAME', 'OP_BACKENDS', 'sapa', 'check_sapa_args'} <= set(module.__all__)
    assert mmdynconv.ops.sapa is sapa
    assert hasattr(torch.ops.mmdynconv, 'sapa') and hasattr(torch.ops.mmdynconv, 'sapa_backward')


def test_sapa_double_backward_is_refused():
    query, key, value = inputs(1, 2, 2, 3, 3, 2)
    (g,) = torch.autograd.grad(sapa(query, key, value, 3, 2).sum(), value, create_graph=True)
    with pytest.raises(NotImplementedError, match='sapa: double backward'):
        g.sum().backward()


def test_sapa_bad_arguments_name_the_argument():
    query, key, value = inputs(1, 2, 3, 3, 4, 2)
    with pytest.raises(ValueError, match='^sapa: kernel_size must be odd, got 2'):
        sapa(query, key, value, 2, 2)
    with pytest.raises(ValueError, match=r'^sapa: kernel_size must be >= 1, got -1'):
        sapa(query, key, value, -1, 2)
    with pytest.raises(TypeError, match='^sapa: scale_factor must be an int, got float 2.5'):
        sapa(query, key, value, 3, 2.5)
    with pytest.raises(ValueError, match=r'^sapa: query must have shape \(B, D, S·H, S·W\) = \(1, 2, 9, 12\), got '
                                         r'\(1, 2, 6, 8\)'):
        sapa(query, key, value, 3, 3)
    with pytest.raises(ValueError, match=r"^sapa: key must have shape \(B, D, H, W\) = \(1, 2, 3, 4\) \(B, H, W: the "
                                         r"value's\), got \(1, 2, 3, 5\)"):
        sapa(query, torch.randn(1, 2, 3, 5, dtype=torch.float64), value, 3, 2)
    with pytest.raises(ValueError, match=r'^sapa: query must have shape .* = \(1, 4, 6, 8\), got \(1, 2, 6, 8\)'):
        sapa(query, torch.randn(1, 4, 3, 4, dtype=torch.float64), value, 3, 2)
    with pytest.raises(TypeError, match="^sapa: query must have value's dtype torch.float64, got torch.float32"):
        sapa(query.float(), key, value, 3, 2)
    with pytest.raises(TypeError, match='^sapa: key must be float16, bfloat16, float32 or float64, got torch.int64'):
        sapa(query, key.long(), value, 3, 2)
    with pytest.raises(ValueError, match=r'^sapa: value must be 4-D, got shape \(3, 3, 4\)'):
        sapa(query, key, value[0], 3, 2)


def test_sapa_backend_argument(monkeypatch):
    """One implementation: None and 'reference' run it (also under MMDYNCONV_BACKEND=triton); 'triton' is refused
    naming the argument and the values allowed."""
    query, key, value = inputs(1, 2, 3, 3, 3, 2)
    expected = sapa(query, key, value, 3, 2)
    torch.testing.assert_close(sapa(query, key, value, 3, 2, backend='reference'), expected)
    monkeypatch.setenv('MMDYNCONV_BACKEND', 'triton')
    torch.testing.assert_close(sapa(query, key, value, 3, 2), expected)
    with pytest.raises(ValueError, match=r"sapa: backend must be None or 'reference' \(sapa has no Triton "
                                         r"kernel\), got 'triton'"):
        sapa(query, key, value, 3, 2, backend='triton')
