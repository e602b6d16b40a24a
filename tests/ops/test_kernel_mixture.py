"""The kernel-mixture op (CondConv / DY-Conv / ODConv) against a per-sample loop oracle written here: values and
gradients, groups, strides, dilations, 1×1 fast path, chunking, dtypes, empty batch, memory, custom op, backend,
errors."""
import pytest
import torch
import torch.nn.functional as F
from torch_support import AUTOCAST_DTYPES, needs_custom_ops

import mmdynconv.ops.kernel_mixture as mixture_module
from mmdynconv.ops.backend import ENV_VAR
from mmdynconv.ops.kernel_mixture import kernel_mixture_conv, kernel_mixture_conv_reference


def _close(actual, expected, tol):
    assert actual.shape == expected.shape
    scale = expected.double().abs().max().clamp_min(1e-12)
    err = float((actual.double() - expected.double()).abs().max() / scale)
    assert err < tol, err


def mixture_oracle(x, weight, routing, spatial_att, in_att, out_att, bias, stride, padding, dilation, groups):
    """Loop over samples and experts: W_b = out ⊙ in ⊙ pos ⊙ Σ_e r_be W_e, one F.conv2d per sample."""
    outs = []
    cig = weight.shape[2]
    for b in range(x.shape[0]):
        w = sum(routing[b, e] * weight[e] for e in range(weight.shape[0]))
        if spatial_att is not None:
            w = w * spatial_att[b]
        if out_att is not None:
            w = w * out_att[b].view(-1, 1, 1, 1)
        if in_att is not None:  # input channel of weight entry (o, i) is group(o)·Cig + i
            cog = w.shape[0] // groups
            idx = torch.arange(w.shape[0]).div(cog, rounding_mode='floor')[:, None] * cig + torch.arange(cig)
            w = w * in_att[b][idx][:, :, None, None]
        bb = None if bias is None else (bias if bias.dim() == 1 else bias[b])
        outs.append(F.conv2d(x[b:b + 1], w, bb, stride, padding, dilation, groups))
    return torch.cat(outs)


def mixture_inputs(b, ci, co, k, e, h, w, groups, attentions=True, bias='static', dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, offset=0.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * 0.5 + offset).to(dtype)

    return dict(x=rnd(b, ci, h, w), weight=rnd(e, co, ci // groups, *k), routing=rnd(b, e, offset=0.5),
                spatial_att=rnd(b, *k, offset=1.0) if attentions else None,
                in_att=rnd(b, ci, offset=1.0) if attentions else None,
                out_att=rnd(b, co, offset=1.0) if attentions else None,
                bias={'static': rnd(co), 'sample': rnd(b, co), None: None}[bias])


def run(fn, tensors, grad_seed=1, **kwargs):
    leaves = {key: (t.detach().clone().requires_grad_() if t is not None else None) for key, t in tensors.items()}
    y = fn(**leaves, **kwargs)
    grad = torch.randn(y.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=torch.float64).to(y.dtype)
    (y * grad).sum().backward()
    return y.detach(), {key: t.grad for key, t in leaves.items() if t is not None}


CASES = [  # b, ci, co, k, e, h, w, groups, stride, padding, dilation, attentions, bias
    (3, 4, 6, (3, 3), 4, 9, 7, 1, 1, 1, 1, True, 'static'),
    (2, 6, 4, (3, 3), 3, 8, 11, 2, 2, 2, 2, True, 'sample'),
    (2, 6, 6, (1, 1), 2, 7, 5, 3, 2, 0, 1, True, None),          # grouped 1×1, stride 2 (matmul path)
    (3, 5, 7, (1, 1), 8, 6, 6, 1, 1, 0, 1, False, 'sample'),     # CondConv/DY-Conv-like: routing only
    (1, 4, 4, (3, 1), 2, 5, 6, 4, (2, 1), (1, 0), 1, True, 'static'),   # depthwise, non-square, batch 1
    (4, 3, 5, (5, 5), 1, 10, 9, 1, 3, 2, 1, True, None),         # one kernel, stride 3, odd sizes
]


@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('chunk', [1 << 21, 1])
def test_mixture_matches_oracle_values_and_gradients(case, chunk, monkeypatch):
    monkeypatch.setattr(mixture_module, 'CHUNK_ELEMENTS', chunk)   # 1: one sample per chunk (up to MAX_CHUNKS)
    b, ci, co, k, e, h, w, groups, stride, padding, dilation, attentions, bias = case
    tensors = mixture_inputs(b, ci, co, k, e, h, w, groups, attentions, bias)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y, grads = run(kernel_mixture_conv, tensors, **kwargs)
    y_ref, grads_ref = run(mixture_oracle, tensors, **kwargs)
    _close(y, y_ref, 1e-12)
    assert grads.keys() == grads_ref.keys()
    for key in grads:
        _close(grads[key], grads_ref[key], 1e-11)
    y_straight, grads_straight = run(kernel_mixture_conv_reference, tensors, **kwargs)
    _close(y_straight, y_ref, 1e-12)
    for key in grads:
        _close(grads_straight[key], grads_ref[key], 1e-11)


@pytest.mark.parametrize('case', CASES[:3])
def test_mixture_empty_batch(case):
    """B = 0 (an mmdet mask head without positive RoIs): a (0, Co, Ho, Wo) output, zero gradients for the shared
    tensors (experts, static bias), empty ones for the per-sample tensors."""
    _, ci, co, k, e, h, w, groups, stride, padding, dilation, attentions, bias = case
    tensors = mixture_inputs(0, ci, co, k, e, h, w, groups, attentions, bias)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y, grads = run(kernel_mixture_conv, tensors, **kwargs)
    y_ref, _ = run(kernel_mixture_conv_reference, mixture_inputs(1, ci, co, k, e, h, w, groups, attentions, bias),
                   **kwargs)
    assert y.shape == (0, *y_ref.shape[1:])
    for key, t in tensors.items():
        if t is not None:
            assert grads[key].shape == t.shape and not grads[key].any(), key


def test_mixture_float32_and_partial_gradients():
    tensors = mixture_inputs(3, 4, 6, (3, 3), 4, 9, 7, 2, dtype=torch.float32)
    tensors['weight'].requires_grad_()
    x = tensors['x'].requires_grad_()
    y = kernel_mixture_conv(**tensors, padding=1, groups=2)
    assert y.dtype == torch.float32
    gx, gw = torch.autograd.grad(y.square().sum(), (x, tensors['weight']))
    ref = mixture_oracle(*(t.double() if t is not None else None for t in tensors.values()), 1, 1, 1, 2)
    _close(y, ref, 2e-6)
    xd, wd = x.detach().double().requires_grad_(), tensors['weight'].detach().double().requires_grad_()
    others = {key: t.double() for key, t in tensors.items() if key not in ('x', 'weight') and t is not None}
    ref = mixture_oracle(xd, wd, others['routing'], others['spatial_att'], others['in_att'], others['out_att'],
                         others['bias'], 1, 1, 1, 2)
    gxd, gwd = torch.autograd.grad(ref.square().sum(), (xd, wd))
    _close(gx, gxd, 2e-5)
    _close(gw, gwd, 2e-5)


@pytest.mark.parametrize('dtype', AUTOCAST_DTYPES)
def test_mixture_under_autocast_runs_in_the_autocast_dtype(dtype):
    tensors = mixture_inputs(2, 8, 8, (3, 3), 4, 8, 8, 1, dtype=torch.float32)
    leaves = {key: t.requires_grad_() for key, t in tensors.items() if t is not None}
    with torch.autocast('cpu', dtype=dtype):
        y = kernel_mixture_conv(**leaves, padding=1)
    assert y.dtype == dtype
    y.float().sum().backward()
    assert all(t.grad.dtype == torch.float32 and torch.isfinite(t.grad).all() for t in leaves.values())
    ref = mixture_oracle(*(t.detach().double() for t in tensors.values()), 1, 1, 1, 1)
    _close(y, ref, 3e-2)


def test_mixture_saves_only_its_inputs_for_backward():
    """Memory-light: nothing of size B·E·Co·Cig·k² (nor B·Co·Cig·k²) is kept between forward and backward."""
    tensors = mixture_inputs(4, 16, 16, (3, 3), 4, 6, 6, 1, dtype=torch.float32)
    leaves = {key: t.requires_grad_() for key, t in tensors.items()}
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        y = kernel_mixture_conv(**leaves, padding=1)
    assert sum(saved) <= sum(t.numel() for t in leaves.values())
    y.sum().backward()
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        kernel_mixture_conv_reference(**leaves, padding=1)
    assert max(saved) >= 4 * 16 * 16 * 9   # the straightforward formulation keeps B·N per-sample kernels


@needs_custom_ops
def test_mixture_custom_op_passes_opcheck():
    """Schema, fake tensor, registered autograd and AOT dispatch of mmdynconv::kernel_mixture_conv."""
    tensors = mixture_inputs(2, 4, 6, (3, 3), 3, 6, 5, 2, dtype=torch.float32)
    args = [t.requires_grad_() for t in tensors.values()] + [[1, 1], [1, 1], [1, 1], 2, torch.float32]
    result = torch.library.opcheck(torch.ops.mmdynconv.kernel_mixture_conv.default, tuple(args))
    assert set(result.values()) == {'SUCCESS'}, result


def test_mixture_bad_arguments_name_the_argument():
    t = mixture_inputs(2, 4, 6, (3, 3), 3, 5, 5, 2)
    with pytest.raises(ValueError, match='groups'):
        kernel_mixture_conv(**t, groups=3)
    with pytest.raises(ValueError, match='weight'):
        kernel_mixture_conv(**dict(t, weight=t['weight'][:, :, :1]), groups=2)
    with pytest.raises(ValueError, match='routing'):
        kernel_mixture_conv(**dict(t, routing=t['routing'][:, :2]), groups=2)
    with pytest.raises(ValueError, match='spatial_att'):
        kernel_mixture_conv(**dict(t, spatial_att=t['spatial_att'].flatten(1)), groups=2)
    with pytest.raises(ValueError, match='bias'):
        kernel_mixture_conv(**dict(t, bias=t['bias'][:2]), groups=2)
    with pytest.raises(TypeError, match='stride'):
        kernel_mixture_conv(**t, groups=2, stride=1.5)
    with pytest.raises(ValueError, match='dilation'):
        kernel_mixture_conv(**t, groups=2, dilation=0)
    with pytest.raises(ValueError, match='too small'):
        kernel_mixture_conv(**t, groups=2, dilation=3)
    with pytest.raises(TypeError, match='in_att'):
        kernel_mixture_conv(**dict(t, in_att=t['in_att'].long()), groups=2)


def test_mixture_backend_argument(monkeypatch):
    """One implementation: None and 'reference' run it (also under MMDYNCONV_BACKEND=triton, which forces Triton
    only where an op has it); 'triton' is refused naming the argument and the values allowed."""
    tensors = mixture_inputs(2, 4, 6, (3, 3), 3, 5, 5, 2)
    expected = kernel_mixture_conv(**tensors, groups=2)
    torch.testing.assert_close(kernel_mixture_conv(**tensors, groups=2, backend='reference'), expected)
    monkeypatch.setenv(ENV_VAR, 'triton')
    torch.testing.assert_close(kernel_mixture_conv(**tensors, groups=2, backend=None), expected)
    with pytest.raises(ValueError, match=r"kernel_mixture_conv: backend must be None or 'reference' "
                                         r"\(kernel_mixture_conv has no Triton kernel\), got 'triton'"):
        kernel_mixture_conv(**tensors, groups=2, backend='triton')
    with pytest.raises(TypeError, match="backend must be None or 'reference'"):
        kernel_mixture_conv(**tensors, groups=2, backend=0)
