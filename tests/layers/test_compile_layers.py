"""Every layer registered by ``mmdynconv.layers`` compiles whole: ``torch.compile(layer, fullgraph=True)`` in train and
eval mode, forward and backward, gives the eager outputs, input and parameter gradients and buffers (BatchNorm
statistics).

The layers come from the registry walk of ``test_conformance.py`` (a newly registered layer is compiled by being
registered), built and called as that suite does (a guided upsampler with its guidance). Backend ``'aot_eager'``:
Dynamo captures the forward in one graph (``fullgraph=True`` turns any graph break into an error) and AOTAutograd
traces forward and backward through the ops' fake implementations and autograd registrations, then runs the traced
graphs eagerly. That is everything that decides whether a layer compiles in one graph; Inductor would add code
generation only, which costs seconds to tens of seconds per graph on a CPU. The traced graphs run the same kernels:
on torch 2.13 every number is bitwise the eager one; the test allows float32 rounding, as AOTAutograd may decompose
composite ops (``linear``, ``layer_norm``) differently.

Needs custom ops (torch >= 2.4): on older torch the ops are autograd Functions that Dynamo cannot trace whole.
"""
import copy

import pytest
import torch
from test_conformance import SIZE, assert_same, build, layer_inputs, make_input, registered_layers
from torch_support import needs_custom_ops

from mmdynconv.layers import FDConv
from mmdynconv.ops.fdconv_fbm import PATH_ENV

pytestmark = needs_custom_ops

LAYERS = sorted(registered_layers())
TOLERANCE = 1e-5   # max error relative to the largest value of each compared tensor


def step(layer, call, x, train):
    """Forward (``call``: the layer or its compiled form; a guided upsampler also gets its guidance) and backward of a
    fixed weighted sum: {what: tensor}."""
    layer.train(train)
    layer.zero_grad(set_to_none=True)
    inputs = [t.detach().requires_grad_() for t in layer_inputs(layer, x)]
    out = call(*inputs)
    weights = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view(out.shape)
    (out.double() * weights).sum().backward()
    return {'output': out.detach(), **{f'grad of input {i}': t.grad for i, t in enumerate(inputs)},
            **{f'grad of {k}': p.grad for k, p in layer.named_parameters()},
            **{f'buffer {k}': b for k, b in layer.named_buffers()}}


def check_compiled(name, layer, x, train):
    eager = copy.deepcopy(layer)
    expected = step(eager, eager, x, train)
    torch._dynamo.reset()
    got = step(layer, torch.compile(layer, fullgraph=True, backend='aot_eager'), x, train)
    assert got.keys() == expected.keys()
    for what, e in expected.items():
        if e is None:
            assert got[what] is None, f'{name}: {what} is not None compiled'
        else:
            assert_same(name, f'{what} (compiled, {"train" if train else "eval"})', got[what], e, TOLERANCE)


@pytest.mark.parametrize('train', [True, False], ids=['train', 'eval'])
@pytest.mark.parametrize('name', LAYERS)
def test_layer_compiles_in_one_graph(name, train):
    check_compiled(name, build(name), make_input(2, *SIZE), train)


@pytest.mark.parametrize('case', ['published', '1x1', 'n=1', 'fbm-fft'])
def test_fdconv_variants_compile_in_one_graph(case, monkeypatch):
    """FDConv beyond the walk's case: the published kernel_num 64, a 1×1 layer (no FBM, no α_pos), n = 1 (no kernel
    attention) and FBM on its FFT path (forced by the environment variable, read while tracing)."""
    monkeypatch.delenv(PATH_ENV, raising=False)
    torch.manual_seed(0)
    if case == 'published':
        layer = FDConv(32, 32, 3, padding=1)
    elif case == '1x1':
        layer = FDConv(24, 32, 1, kernel_num=4)
    elif case == 'n=1':
        layer = FDConv(24, 24, 3, padding=1, kernel_num=1)
    else:
        monkeypatch.setenv(PATH_ENV, 'fft')
        layer = FDConv(24, 24, 3, padding=1, kernel_num=4)
    x = torch.randn(2, layer.in_channels, 7, 9)
    for train in (True, False):
        check_compiled(f'FDConv ({case})', layer, x, train)
