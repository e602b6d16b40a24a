"""Helpers for the op tests: an independent unfold oracle of DDF, input factories and a scaled comparison."""
import types

import pytest
import torch
import torch.nn.functional as F

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
# max |actual - expected| allowed, relative to max |expected|: one rounding of the result plus fp32 accumulation
TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def ddf_unfold(x, fc, fs, k, stride, dilation, combine):
    """DDF written independently of mmdynconv: unfold x into (B, C, k², Ho·Wo) and build the full kernel K."""
    B, C, H, W = x.shape
    G, (Ho, Wo) = fs.shape[1] // (k * k), fs.shape[2:]
    cols = F.unfold(x, k, dilation=dilation, padding=(k - 1) // 2 * dilation, stride=stride)
    cols = cols.view(B, G, C // G, k * k, Ho, Wo)
    fs6, fc6 = fs.reshape(B, G, 1, k * k, Ho, Wo), fc.reshape(B, G, C // G, k * k, 1, 1)
    K = fs6 * fc6 if combine == 'mul' else fs6 + fc6
    return (cols * K).sum(3).view(B, C, Ho, Wo)


def make_inputs(B, C, H, W, k, stride=1, heads=1, dtype=torch.float32, layout='contiguous', seed=0):
    """Leaf tensors (x, fc, fs) requiring grad. layout: 'contiguous', 'channels_last' or 'strided' (views with
    gaps and permuted strides)."""
    gen = torch.Generator().manual_seed(seed)
    Ho, Wo = (H - 1) // stride + 1, (W - 1) // stride + 1
    shapes = ((B, C, H, W), (B, C, k, k), (B, heads * k * k, Ho, Wo))
    tensors = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    if layout == 'channels_last':
        tensors = [t.contiguous(memory_format=torch.channels_last) for t in tensors]
    elif layout == 'strided':
        x, fc, fs = tensors
        x = torch.cat([x, x], dim=3)[..., ::2]                                   # W stride 2
        fc = fc.transpose(2, 3).contiguous().transpose(2, 3)                     # column-major taps
        fs = torch.cat([fs, fs], dim=1)[:, fs.shape[1]:]                         # offset, batch stride 2×
        tensors = [x, fc, fs]
    elif layout != 'contiguous':
        raise ValueError(layout)
    return tuple(t.to(DEVICE, dtype).detach().requires_grad_() for t in tensors)


def assert_scaled_close(actual, expected, dtype, what=''):
    """max |actual - expected| <= TOLERANCE[dtype] · max |expected| (compared in float64)."""
    assert actual.shape == expected.shape, what
    err = (actual.double() - expected.double()).abs().max().item() if actual.numel() else 0.0
    scale = expected.double().abs().max().item() if expected.numel() else 0.0
    assert err <= TOLERANCE[dtype] * max(scale, 1e-30), f'{what}: max error {err:.3g}, scale {scale:.3g}'


def oracle_with_grads(inputs, grad, k, stride, dilation, combine):
    """Unfold oracle in float64 on the (possibly rounded) inputs: output and gradients of <out, grad>."""
    xs = [t.detach().double().requires_grad_() for t in inputs]
    out = ddf_unfold(*xs, k, stride, dilation, combine)
    grads = torch.autograd.grad(out, xs, grad.double())
    return out.detach(), grads


@pytest.fixture
def ddf_helpers():
    """Namespace of the helpers above (test files import nothing from conftest directly)."""
    return types.SimpleNamespace(ddf_unfold=ddf_unfold, make_inputs=make_inputs, DEVICE=DEVICE,
                                 assert_scaled_close=assert_scaled_close, oracle_with_grads=oracle_with_grads)
