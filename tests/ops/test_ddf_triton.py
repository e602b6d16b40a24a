"""The fused Triton DDF kernels against the reference, values and all three gradients.

Without a GPU the kernels run in Triton's interpreter (``TRITON_INTERPRET=1``, set by tests/conftest.py), which
costs seconds per case: shapes are tiny and the grid covers k, stride, dilation, heads, combine, dtype and layout
pairwise rather than as a full product.
"""
import pytest
import torch

from mmdynconv.ops import ddf
from mmdynconv.ops.backend import triton_unusable_reason
from mmdynconv.ops.ddf_reference import DDFOptions

if triton_unusable_reason():
    pytest.skip(triton_unusable_reason(), allow_module_level=True)
import triton  # noqa: E402  (after the skip)

from mmdynconv.ops import ddf_triton  # noqa: E402  (after the skip: needs triton)

F32, F16, BF16, F64 = torch.float32, torch.float16, torch.bfloat16, torch.float64
# k, stride, dilation, heads ('C' = one channel per head), combine, dtype, layout, (C, H, W)
CASES = [
    (1, 1, 1, 1, 'mul', F32, 'contiguous', (4, 7, 9)),
    (1, 2, 3, 'C', 'add', BF16, 'strided', (4, 5, 6)),
    (3, 1, 1, 2, 'add', F16, 'channels_last', (4, 7, 9)),
    (3, 2, 1, 1, 'mul', F32, 'strided', (6, 9, 7)),
    (3, 3, 2, 'C', 'mul', F16, 'contiguous', (4, 11, 8)),
    (3, 1, 3, 2, 'mul', BF16, 'contiguous', (4, 7, 9)),
    (5, 2, 2, 2, 'add', F32, 'channels_last', (4, 9, 9)),
    (5, 3, 1, 1, 'mul', BF16, 'channels_last', (2, 10, 7)),
    (5, 1, 3, 'C', 'add', F32, 'strided', (3, 6, 11)),
    (7, 1, 2, 1, 'mul', F16, 'strided', (4, 8, 9)),
    (7, 3, 3, 2, 'add', F64, 'contiguous', (4, 11, 10)),
    (9, 2, 1, 'C', 'mul', F32, 'contiguous', (2, 9, 11)),
]
SLOW_CASES = [
    (11, 1, 1, 2, 'mul', F32, 'channels_last', (4, 7, 9)),
    (13, 2, 3, 1, 'add', F16, 'contiguous', (2, 9, 8)),
    (15, 1, 1, 'C', 'mul', F32, 'contiguous', (2, 11, 11)),
    (11, 3, 2, 2, 'add', BF16, 'strided', (2, 7, 9)),
]


def _compare(h, k, stride, dilation, heads, combine, dtype, layout, chw, B=2, config=None):
    C, H, W = chw
    heads = C if heads == 'C' else heads
    inputs = h.make_inputs(B, C, H, W, k, stride, heads, dtype, layout)
    grad = torch.randn((B, C, (H - 1) // stride + 1, (W - 1) // stride + 1),
                       generator=torch.Generator().manual_seed(1)).to(inputs[0])
    if config is None:
        out = ddf(*inputs, k, stride, dilation, combine, backend='triton')
        grads = torch.autograd.grad(out, inputs, grad)
    else:
        options = DDFOptions(k, stride, dilation, combine)
        out = ddf_triton.ddf_forward_triton(*inputs, options, config)
        grads = ddf_triton.ddf_backward_triton(grad, *inputs, options, (True, True, True), config)
    ref_inputs = [t.detach().double().requires_grad_() for t in inputs]
    ref = ddf(*ref_inputs, k, stride, dilation, combine, backend='reference')
    ref_grads = torch.autograd.grad(ref, ref_inputs, grad.double())
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    h.assert_scaled_close(out, ref, dtype, 'out')
    for name, g, e in zip(('grad x', 'grad channel_filter', 'grad spatial_filter'), grads, ref_grads):
        h.assert_scaled_close(g, e, dtype, name)
    return out, grads


@pytest.mark.parametrize('case', CASES, ids=str)
def test_triton_matches_reference(ddf_helpers, case):
    out, grads = _compare(ddf_helpers, *case)
    layout = case[6]
    assert out.is_contiguous(memory_format=torch.channels_last) == (layout == 'channels_last')


@pytest.mark.slow
@pytest.mark.parametrize('case', SLOW_CASES, ids=str)
def test_triton_matches_reference_large_kernels(ddf_helpers, case):
    _compare(ddf_helpers, *case)


# Small tiles force several pixel blocks, channel blocks and channel splits: partial sums of both filter gradients.
@pytest.mark.parametrize('heads,splits,combine,dtype,chw', [(1, 2, 'mul', F32, (8, 9, 11)),
                                                            (2, 3, 'add', F16, (8, 9, 11)),
                                                            ('C', 1, 'mul', F32, (3, 7, 9))])
def test_multi_block_launch(ddf_helpers, heads, splits, combine, dtype, chw):
    config = ddf_triton.LaunchConfig(block_c=2, block_p=16, filter_block_c=2, filter_block_p=16,
                                     channel_splits=splits)
    _compare(ddf_helpers, 3, 2, 1, heads, combine, dtype, 'contiguous', chw, config=config)


def test_default_config_splits_channels_when_programs_are_few():
    x = torch.empty(1, 512, 7, 7, device='meta')
    config = ddf_triton.default_config(x, 3, 1, (7, 7))
    assert config.channel_splits > 1 and config.block_c * config.block_p <= 2048
    big = ddf_triton.default_config(torch.empty(2, 256, 200, 304, device='meta'), 15, 1, (200, 304))
    assert big.channel_splits == 1 and big.filter_block_p >= 15 * 15


@pytest.mark.parametrize('chw', [(64, 7, 7), (4, 13, 13)])
def test_default_config_partial_sums(ddf_helpers, chw):
    """Default tiles with channel splits (64 channels on 7×7) and with several pixel blocks (13×13)."""
    x = torch.empty(1, *chw, device='meta')
    config = ddf_triton.default_config(x, 3, 1, chw[1:])
    assert config.channel_splits > 1 or triton.cdiv(chw[1] * chw[2], config.filter_block_p) > 1
    _compare(ddf_helpers, 3, 1, 1, 1, 'mul', F32, 'contiguous', chw, B=1)


def test_expanded_and_partial_gradients(ddf_helpers):
    """The gradient of .sum() has stride 0; only some inputs require grad; results are deterministic."""
    x, fc, fs = ddf_helpers.make_inputs(2, 4, 7, 9, 3, 1, 2, F32)
    fs = fs.detach()
    runs = []
    for _ in range(2):
        out = ddf(x, fc, fs, 3, combine='mul', backend='triton')
        runs.append(torch.autograd.grad(out.sum(), (x, fc)))
    ref = ddf(x, fc, fs, 3, combine='mul', backend='reference')
    expected = torch.autograd.grad(ref.sum(), (x, fc))
    for g, e in zip(runs[0], expected):
        ddf_helpers.assert_scaled_close(g, e, F32)
    assert all(torch.equal(a, b) for a, b in zip(*runs))


@pytest.mark.parametrize('shape', [(0, 4, 5, 5), (2, 0, 5, 5), (2, 4, 0, 5)])
def test_empty_inputs(ddf_helpers, shape):
    B, C, H, W = shape
    x, fc, fs = ddf_helpers.make_inputs(B, C, H, W, 3, 1, 1, F32)
    out = ddf(x, fc, fs, 3, backend='triton')
    out.sum().backward()
    assert out.shape == (B, C, H, W) and fs.grad.shape == fs.shape and not fs.grad.any()
