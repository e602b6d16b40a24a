"""mmdynconv.ops.carafe against an unfold oracle written here (values and gradients), against mmcv's CUDA kernel
when a GPU is present, memory use and errors."""
import pytest
import torch
import torch.nn.functional as F
from torch_support import needs_custom_ops

from mmdynconv.ops.carafe import carafe


def carafe_unfold(x, mask, k, group, s):
    """Unfold x into (B, G, C/G, k², H, W), repeat every low-resolution pixel S×S times, weight by the mask and sum."""
    b, c, h, w = x.shape
    cols = F.unfold(x, k, padding=(k - 1) // 2).view(b, group, c // group, k * k, h, w)
    cols = cols.repeat_interleave(s, dim=4).repeat_interleave(s, dim=5)            # (B, G, C/G, k², S·H, S·W)
    return (cols * mask.view(b, group, 1, k * k, h * s, w * s)).sum(3).view(b, c, h * s, w * s)


def inputs(b, c, h, w, k, group, s, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=gen, dtype=torch.float64)
    mask = torch.randn(b, group * k * k, h * s, w * s, generator=gen, dtype=torch.float64)
    return x.to(dtype).requires_grad_(), mask.to(dtype).requires_grad_()


def _close(actual, expected, tol):
    scale = expected.double().abs().max().clamp_min(1e-12)
    assert float((actual.double() - expected.double()).abs().max() / scale) < tol


@pytest.mark.parametrize('b,c,h,w,k,group,s', [(2, 6, 5, 7, 5, 1, 2), (1, 8, 4, 3, 3, 4, 3), (2, 4, 6, 6, 1, 2, 2),
                                               (1, 3, 1, 2, 5, 3, 2), (2, 4, 5, 4, 3, 1, 1)])
def test_carafe_matches_unfold_oracle(b, c, h, w, k, group, s):
    x, mask = inputs(b, c, h, w, k, group, s)
    y = carafe(x, mask, k, group, s)
    ref = carafe_unfold(x, mask, k, group, s)
    _close(y, ref, 1e-12)
    grad = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    gx, gm = torch.autograd.grad(y, (x, mask), grad)
    rx, rm = torch.autograd.grad(ref, (x, mask), grad)
    _close(gx, rx, 1e-12)
    _close(gm, rm, 1e-12)
    (gx_only,) = torch.autograd.grad(carafe(x, mask.detach(), k, group, s), x, grad)
    _close(gx_only, rx, 1e-12)


def test_carafe_empty_batch():
    x, mask = inputs(0, 4, 3, 5, 3, 2, 2)
    out = carafe(x, mask, 3, 2, 2)
    assert out.shape == (0, 4, 6, 10)
    out.sum().backward()
    assert x.grad.shape == x.shape and mask.grad.shape == mask.shape


@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-5), (torch.bfloat16, 2e-2), (torch.float16, 2e-3)])
def test_carafe_low_precision(dtype, tol):
    x, mask = inputs(2, 8, 6, 5, 5, 2, 2, dtype=dtype)
    y = carafe(x, mask, 5, 2, 2)
    assert y.dtype == dtype
    ref = carafe_unfold(x.detach().double(), mask.detach().double(), 5, 2, 2)
    _close(y, ref, tol)
    gx, gm = torch.autograd.grad(y.float().sum(), (x, mask))
    assert gx.dtype == gm.dtype == dtype


def test_carafe_keeps_no_k2_buffer():
    """Only the two inputs are saved for backward (no (B, C·k², S·H, S·W) unfold)."""
    x, mask = inputs(1, 16, 8, 8, 5, 1, 2, dtype=torch.float32)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        carafe(x, mask, 5, 1, 2)
    assert sum(saved) == x.numel() + mask.numel()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='mmcv has a CARAFE kernel for CUDA only')
def test_carafe_matches_mmcv_cuda_kernel():
    from mmcv.ops import carafe as mmcv_carafe
    for b, c, h, w, k, group, s in [(2, 16, 9, 7, 5, 1, 2), (1, 8, 6, 6, 3, 4, 2)]:
        x, mask = inputs(b, c, h, w, k, group, s, dtype=torch.float32)
        x, mask = x.detach().cuda().requires_grad_(), mask.detach().softmax(1).cuda().requires_grad_()
        ours = carafe(x, mask, k, group, s)
        theirs = mmcv_carafe(x, mask, k, group, s)
        _close(ours, theirs, 1e-5)
        grad = torch.randn_like(ours)
        for a, e in zip(torch.autograd.grad(ours, (x, mask), grad), torch.autograd.grad(theirs, (x, mask), grad)):
            _close(a, e, 1e-4)


@needs_custom_ops
def test_carafe_custom_op_passes_opcheck():
    x, mask = inputs(1, 4, 3, 4, 3, 2, 2, dtype=torch.float32)
    result = torch.library.opcheck(torch.ops.mmdynconv.carafe.default, (x, mask, 3, 2, 2))
    assert set(result.values()) == {'SUCCESS'}, result


def test_carafe_bad_arguments_name_the_argument():
    x, mask = inputs(1, 4, 3, 3, 3, 2, 2)
    with pytest.raises(ValueError, match='kernel_size must be odd'):
        carafe(x, mask, 2, 2, 2)
    with pytest.raises(ValueError, match='group_size'):
        carafe(x, mask, 3, 3, 2)
    with pytest.raises(ValueError, match='masks must have shape'):
        carafe(x, mask, 3, 1, 2)
    with pytest.raises(TypeError, match='scale_factor'):
        carafe(x, mask, 3, 2, 2.5)
    with pytest.raises(TypeError, match='masks'):
        carafe(x, mask.float(), 3, 2, 2)


def test_carafe_backend_argument(monkeypatch):
    """One implementation: None and 'reference' run it (also under MMDYNCONV_BACKEND=triton); 'triton' is refused
    naming the argument and the values allowed."""
    x, mask = inputs(1, 4, 3, 3, 3, 2, 2)
    expected = carafe(x, mask, 3, 2, 2)
    torch.testing.assert_close(carafe(x, mask, 3, 2, 2, backend='reference'), expected)
    monkeypatch.setenv('MMDYNCONV_BACKEND', 'triton')
    torch.testing.assert_close(carafe(x, mask, 3, 2, 2), expected)
    with pytest.raises(ValueError, match=r"carafe: backend must be None or 'reference' \(carafe has no Triton "
                                         r"kernel\), got 'triton'"):
        carafe(x, mask, 3, 2, 2, backend='triton')
