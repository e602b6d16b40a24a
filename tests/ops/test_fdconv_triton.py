"""FDConv's fused Triton kernels (mmdynconv.ops.fdconv_triton) against the oracle and the torch path they replace.

On CPU the kernels run through Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1 without a GPU); the
compile test builds them for a real GPU target.
"""
import textwrap

import pytest
import torch
from test_fdconv_oracle import _close, _op_inputs, _run, _structures
from tool_runner import compile_for_gpu

from mmdynconv.ops import fdconv_dynamic_conv
from mmdynconv.ops.backend import triton_unusable_reason
from mmdynconv.ops.fdconv_oracle import fdconv_oracle

if triton_unusable_reason():
    pytest.skip(triton_unusable_reason(), allow_module_level=True)
DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'

CASES = [  # b, ci, co, k, n, h, w, stride, padding, dilation, fold, chunk, save
    (2, 5, 7, 3, 4, 6, 7, 1, 1, 1, None, 1 << 22, 1 << 24),      # odd Ci·k, mixed kernels saved
    (3, 6, 4, 3, 5, 5, 5, 2, 1, 1, True, 1, 0),                  # stride 2, one sample per chunk, recomputed
    (2, 4, 6, 1, 3, 5, 4, 2, 0, 1, False, 1 << 22, 1 << 24),     # k = 1 (no α_pos), batched-matmul path
    (1, 3, 5, 3, 1, 5, 4, 1, 1, 1, False, 1 << 22, 1 << 24),     # batch 1, n = 1: one shared kernel
    (2, 6, 6, 3, 7, 7, 6, 1, 2, 2, False, 1, 0),                 # dilation 2, α_in/α_out on activations
    (2, 4, 5, 3, 6, 4, 4, (2, 1), (1, 0), 1, True, 1 << 22, 0),  # asymmetric stride / padding, folded
]


def _to(tensors, device):
    return {key: (t.to(device) if t is not None else None) for key, t in tensors.items()}


@pytest.mark.parametrize('case', CASES)
def test_triton_backend_matches_oracle(case, monkeypatch):
    b, ci, co, k, n, h, w, stride, padding, dilation, fold, chunk, save = case
    monkeypatch.setattr('mmdynconv.ops.fdconv.CHUNK_ELEMENTS', chunk)
    monkeypatch.setattr('mmdynconv.ops.fdconv.SAVE_TILES_ELEMENTS', save)
    tensors, band, scale = _op_inputs(b, ci, co, k, n, h, w)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation)
    y_ref, g_ref = _run(fdconv_oracle, tensors, band, scale, **kwargs)
    y, g = _run(fdconv_dynamic_conv, _to(tensors, DEVICE), band.to(DEVICE), scale, fold=fold, backend='triton',
                **kwargs)
    _close(y.cpu(), y_ref)
    assert g.keys() == g_ref.keys()
    for key in g_ref:
        _close(g[key].cpu(), g_ref[key], 5e-5)


@pytest.mark.parametrize('wanted', [('spectrum',), ('local_weight',), ('in_att', 'out_att', 'pos_att'), ('x',)])
def test_triton_backend_gradient_subsets(wanted):
    """Each output of the fused backward kernel alone (d tiles, d logits, Q), and none of them."""
    tensors, band, scale = _op_inputs(2, 5, 6, 3, 4, 5, 6)
    results = []
    for backend in ('reference', 'triton'):
        leaves = {key: t.clone().requires_grad_(key in wanted) for key, t in tensors.items()}
        y = fdconv_dynamic_conv(leaves['x'], *_structures(leaves, band, scale), leaves['bias'], padding=1, fold=True,
                                backend=backend)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        results.append({key: t.grad for key, t in leaves.items()})
    for key in tensors:
        if key in wanted:
            _close(results[1][key], results[0][key], 1e-5)
        else:
            assert results[1][key] is None


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_triton_backend_under_autocast(dtype):
    """The kernels write W in the autocast dtype from fp32 arithmetic, exactly as the torch path rounds it."""
    tensors, band, scale = _op_inputs(2, 6, 5, 3, 4, 5, 5)
    outputs = []
    for backend in ('reference', 'triton'):
        with torch.autocast(DEVICE, dtype=dtype):
            y, g = _run(fdconv_dynamic_conv, _to(tensors, DEVICE), band.to(DEVICE), scale, padding=1,
                        backend=backend)
        assert y.dtype == dtype
        outputs.append((y.float().cpu(), {key: t.cpu() for key, t in g.items()}))
    (y_ref, g_ref), (y, g) = outputs
    _close(y, y_ref, 1e-2)
    for key in g_ref:
        _close(g[key].float(), g_ref[key].float(), 2e-2)


def test_layer_uses_triton_backend_from_environment(monkeypatch):
    """MMDYNCONV_BACKEND=triton puts a whole FDConv layer (as configs build it) on the fused kernels."""
    import mmdynconv.ops.fdconv_triton as fdconv_triton
    from mmdynconv.layers.fdconv import FDConv
    torch.manual_seed(0)
    layer = FDConv(8, 8, 3, padding=1, kernel_num=4, dynamic_min_channels=4)
    with torch.no_grad():
        layer.spectrum.normal_()
    x = torch.randn(2, 8, 6, 5)
    results, original = [], fdconv_triton.assemble_weight_triton
    for backend in ('reference', 'triton'):
        monkeypatch.setenv('MMDYNCONV_BACKEND', backend)
        calls = []
        monkeypatch.setattr(fdconv_triton, 'assemble_weight_triton', lambda *a: calls.append(1) or original(*a))
        layer.zero_grad()
        xi = x.clone().requires_grad_()
        layer(xi).square().sum().backward()
        assert bool(calls) == (backend == 'triton')
        results.append((xi.grad, layer.spectrum.grad.clone()))
    for reference, fused in zip(*results):
        _close(fused, reference, 1e-5)


def test_triton_backend_on_cpu_needs_the_interpreter(monkeypatch):
    if DEVICE != 'cpu':
        pytest.skip('checks the CPU error')
    monkeypatch.delenv('TRITON_INTERPRET')
    tensors, band, scale = _op_inputs(1, 4, 4, 3, 2, 4, 4)
    with pytest.raises(RuntimeError, match='TRITON_INTERPRET'):
        _run(fdconv_dynamic_conv, tensors, band, scale, padding=1, backend='triton')
    with pytest.raises(ValueError, match='backend'):
        _run(fdconv_dynamic_conv, tensors, band, scale, padding=1, backend='cuda')


SCRIPT = textwrap.dedent("""
    from mmdynconv.ops import fdconv_triton
    from tool_runner import compile_for_sm90

    POINTERS = {'_assemble_fwd': ('tiles_ptr', 'lw_ptr', 'feat_ptr', 'pos_ptr', 'out_ptr', 'in_ptr', 'w_ptr'),
                '_assemble_bwd': ('grad_ptr', 'tiles_ptr', 'lw_ptr', 'feat_ptr', 'pos_ptr', 'out_ptr', 'in_ptr',
                                  'q_ptr', 'gt_ptr', 'gl_ptr')}
    LOW = {'w_ptr', 'grad_ptr'}   # the conv dtype; everything else fp32
    for name, (dtype, k, flag) in [(n, c) for n in POINTERS for c in [('fp32', 3, True), ('bf16', 1, False),
                                                                       ('fp16', 3, False)]]:
        consts = dict(K=k, KAPPA=5, HAS_POS=k > 1, FOLD=flag, BLOCK=128)
        if name == '_assemble_bwd':
            consts.update(NEED_Q=True, NEED_TILES=flag, NEED_LOGITS=True)
        pointers = {a: dtype if a in LOW else 'fp32' for a in POINTERS[name]}
        compile_for_sm90(getattr(fdconv_triton, name), pointers, consts, f'{name} {dtype}')
""")



@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason='covered by the GPU runs of the other tests')
def test_kernels_compile_for_sm90():
    stdout = compile_for_gpu(SCRIPT)
    assert stdout.count(' ok') == 6
