"""ONNX export of DDF, DDF-Up and FDConv layers: stock ONNX Runtime matches PyTorch.

All layer cases are held by one module and exported once (an export costs seconds). Tolerance (fp32): every
output's largest difference is at most ``tol`` = 1e-5 times that output's largest magnitude (measured ~2e-7 for DDF /
DDF-Up and ~5e-7 for FDConv, whose FFTs are exported as matrix products; through ONNX ``DFT`` they were ~3e-5).
"""
import onnx
import pytest
import torch
from torch_support import needs_export

from mmdynconv.deploy.export import export_onnx, export_program, run_onnx, torch_outputs
from mmdynconv.layers import DDFConv, DDFUpsample, FDConv
from mmdynconv.ops import ddf
from mmdynconv.ops.ddf import ddf_functional

pytestmark = needs_export

CASES = {  # name: (layer, input shapes, relative tolerance)
    'ddf_k3_s2_heads2_odd': (lambda: DDFConv(8, 8, 3, stride=2, heads=2), [(2, 8, 11, 9)], 1e-5),
    'ddf_k3_d2_add': (lambda: DDFConv(6, 6, 3, dilation=2, kernel_combine='add'), [(1, 6, 13, 10)], 1e-5),
    'ddf_up_x2_heads2': (lambda: DDFUpsample(8, 2, 3, heads=2), [(2, 8, 7, 5)], 1e-5),
    'ddf_up_guided_output': (lambda: DDFUpsample(4, 2, 3, guidance_channels=3, guidance_at='output'),
                             [(1, 4, 5, 7), (1, 3, 10, 14)], 1e-5),
    'fdconv_k3_fbm_odd': (lambda: FDConv(20, 24, 3, padding=1, kernel_num=4), [(2, 20, 13, 11)], 1e-5),
    'fdconv_k3_s2_d2': (lambda: FDConv(18, 20, 3, stride=2, padding=2, dilation=2, kernel_num=8), [(1, 18, 15, 12)],
                        1e-5),
    'fdconv_k1_s2': (lambda: FDConv(24, 20, 1, stride=2, kernel_num=4), [(2, 24, 9, 12)], 1e-5),
}


class AllLayers(torch.nn.Module):
    """Every case of CASES side by side: forward(*inputs of all cases) → one output per case."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layers = torch.nn.ModuleDict({name: make() for name, (make, _, _) in CASES.items()})
        with torch.no_grad():  # move away from the identity-like initial attentions
            for p in self.parameters():
                p.add_(torch.randn_like(p) * 0.05)

    def forward(self, *inputs):
        outs, i = [], 0
        for name, (_, shapes, _) in CASES.items():
            outs.append(self.layers[name](*inputs[i:i + len(shapes)]))
            i += len(shapes)
        return tuple(outs)


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    model = AllLayers().eval()
    gen = torch.Generator().manual_seed(1)
    inputs = tuple(torch.randn(s, generator=gen) for _, shapes, _ in CASES.values() for s in shapes)
    path = str(tmp_path_factory.mktemp('onnx') / 'layers.onnx')
    ops = export_onnx(model, inputs, path, optimize=False)
    return model, inputs, path, ops


def test_graph_uses_standard_ops_only(exported):
    _, _, path, ops = exported
    graph = onnx.load(path).graph
    assert {n.domain for n in graph.node} <= {'', 'ai.onnx'}
    assert 'DFT' not in ops and 'MatMul' in ops  # FFTs (FBM's band split, FDConv's spectra) as matrix products
    assert len(graph.output) == len(CASES)


@pytest.mark.parametrize('index,name', list(enumerate(CASES)))
def test_onnxruntime_matches_pytorch(exported, index, name):
    model, inputs, path, _ = exported
    if not hasattr(test_onnxruntime_matches_pytorch, 'cache'):
        test_onnxruntime_matches_pytorch.cache = (torch_outputs(model, inputs), run_onnx(path, inputs))
    ref, got = test_onnxruntime_matches_pytorch.cache
    assert got[index].shape == ref[index].shape
    err = (got[index] - ref[index]).abs().max() / ref[index].abs().max()
    assert err <= CASES[name][2], f'{name}: relative error {err:.2e}'


def test_decomposition_removes_the_custom_op():
    layer = DDFConv(4, 4, 3, stride=2).eval()
    program = export_program(layer, (torch.randn(1, 4, 9, 8),))
    targets = {str(n.target) for n in program.graph.nodes if n.op == 'call_function'}
    assert not any('mmdynconv' in t for t in targets), targets


@pytest.mark.parametrize('k,s,d,heads,combine', [(3, 1, 1, 1, 'mul'), (3, 2, 1, 2, 'add'), (5, 3, 2, 3, 'mul'),
                                                 (1, 2, 1, 1, 'mul'), (3, 2, 3, 1, 'add')])
def test_ddf_functional_matches_the_op(k, s, d, heads, combine):
    gen = torch.Generator().manual_seed(k * 10 + s)
    x = torch.randn(2, 6, 11, 8, generator=gen, dtype=torch.float64)
    ho, wo = (11 - 1) // s + 1, (8 - 1) // s + 1
    fc = torch.randn(2, 6, k, k, generator=gen, dtype=torch.float64)
    fs = torch.randn(2, heads * k * k, ho, wo, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(ddf_functional(x, fc, fs, k, s, d, combine), ddf(x, fc, fs, k, s, d, combine))


def test_export_on_an_older_torch_says_what_it_needs(monkeypatch):
    from mmdynconv.deploy import export as export_module
    monkeypatch.setattr(export_module, 'TORCH_VERSION', (2, 4))
    with pytest.raises(RuntimeError, match=r'ONNX export needs torch >= 2\.5'):
        export_program(DDFConv(4, 4, 3), (torch.randn(1, 4, 5, 5),))
