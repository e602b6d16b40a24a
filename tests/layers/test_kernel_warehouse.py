"""KernelWarehouse (``mmdynconv.layers.KernelWarehouseConv``): values and gradients against a float64 oracle that
assembles every sample's kernel cell by cell, the cell assignment rules, shared warehouses, the plain-checkpoint rule,
the temperature schedule, the authors' release (fixture) and argument errors."""
import copy
import math
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch_support import needs_custom_ops, needs_openmmlab

from mmdynconv.layers import KernelWarehouseConv
from mmdynconv.layers.kernel_warehouse import Warehouse

ROOT = Path(__file__).parents[2]
FIXTURE = ROOT / 'tests' / 'fixtures' / 'kernel_warehouse_release_a4ac17d.pt'
RELEASE_OPTIONS = dict(cell_num_ratio='cell_num_ratio', cell_inplane_ratio='cell_in_ratio',
                       cell_outplane_ratio='cell_out_ratio', nonlocal_basis_ratio='nonlocal_basis_ratio')


def expected_assignment(m, ratio, first, n):
    """The rule of docs/kernel_warehouse.md, written out: r >= 1: first + r·t; r = 1/k: the cells with
    t mod k = ⌊t/k⌋ mod k get consecutive cells from first, the others the zero cell n."""
    if ratio >= 1:
        return [first + int(ratio) * t for t in range(m)]
    k, out, nxt = round(1 / ratio), [], first
    for t in range(m):
        if t % k == (t // k) % k:
            out.append(nxt)
            nxt += 1
        else:
            out.append(n)
    return out


def oracle(layer, params, x, training):
    """Float64 output of ``layer`` from ``params`` (leaf tensors, for autograd): the attention step by step, then
    every sample's kernel assembled cell by cell (tap s, output block o, input block g) and F.conv2d per sample."""
    att, wh = layer.attention, layer.warehouse
    n, m = wh.num_cells, att.num_mixtures
    co, ci = wh.cell_out, wh.cell_in
    go, gi = layer.out_channels // co, layer.in_channels // layer.groups // ci
    kh, kw = layer.kernel_size
    h = x.mean((2, 3)) @ params['attention.fc1.weight'].t()
    if training and x.shape[0] > 1:
        mean, var = h.mean(0), h.var(0, unbiased=False)
    else:
        mean, var = params['attention.norm.running_mean'], params['attention.norm.running_var']
    h = (h - mean) / torch.sqrt(var + 1e-5)
    h = torch.relu(h * params['attention.norm.weight'] + params['attention.norm.bias'])
    if att.fc3 is None:
        z = (h @ params['attention.fc2.weight'].t() + params['attention.fc2.bias']).view(-1, m, n + 1)
    else:
        first, size = att.span
        raw = (h @ params['attention.fc2.weight'].t()).view(-1, m, size + att.num_basis + 1)
        other = raw[:, :, size:size + att.num_basis] @ params['attention.fc3.weight'].t()
        z = torch.cat([other[:, :, :first], raw[:, :, :size], other[:, :, first:], raw[:, :, -1:]], 2)
        z = z + params['attention.basis_bias'].view(m, n + 1)
    z = z / (z.abs().sum(2, keepdim=True) + layer.eps)
    beta = torch.zeros(m, n + 1, dtype=x.dtype)
    first = wh.first_cell(layer.warehouse_slot)
    for t, j in enumerate(expected_assignment(m, wh.cell_num_ratio, first, n)):
        beta[t, j] = 1
    tau = layer.temperature
    alpha = ((1 - tau) * z + tau * beta)[:, :, :n]
    cells = params['cells']
    outs = []
    for b in range(x.shape[0]):
        kernel = x.new_zeros(layer.out_channels, layer.in_channels // layer.groups, kh, kw)
        for t in range(m):
            s, o, g = t // (go * gi), (t // gi) % go, t % gi
            cell = (alpha[b, t, :, None, None] * cells).sum(0)
            kernel[o * co:(o + 1) * co, g * ci:(g + 1) * ci, s // kw, s % kw] = cell
        outs.append(F.conv2d(x[b:b + 1], kernel, params.get('bias'), layer.stride, layer.padding, layer.dilation,
                             layer.groups))
    return torch.cat(outs)


def layer_params(layer):
    """{oracle name: float64 leaf} of every parameter and BatchNorm statistic of ``layer``."""
    params = {k: v.detach().clone().requires_grad_() for k, v in layer.named_parameters()
              if not k.startswith('warehouse.')}
    params['cells'] = layer.warehouse.cells.detach().clone().requires_grad_()
    for k in ('running_mean', 'running_var'):
        params[f'attention.norm.{k}'] = getattr(layer.attention.norm, k).clone()
    return params


def check_against_oracle(layer, x, training, tol=1e-12):
    layer.train(training)
    params = layer_params(layer)
    xo = x.clone().requires_grad_()
    expected = oracle(layer, params, xo, training)
    grad_out = torch.randn_like(expected)
    expected.backward(grad_out)
    xl = x.clone().requires_grad_()
    layer.zero_grad()
    out = layer(xl)
    out.backward(grad_out)
    scale = expected.abs().max().item()
    assert (out - expected).abs().max().item() <= tol * scale
    torch.testing.assert_close(xl.grad, xo.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(layer.warehouse.cells.grad, params['cells'].grad, rtol=1e-10, atol=1e-12)
    for k, p in layer.named_parameters():
        if not k.startswith('warehouse.'):
            torch.testing.assert_close(p.grad, params[k].grad, rtol=1e-10, atol=1e-12, msg=k)


CASES = {
    '1x-3x3': dict(args=(8, 12, 3), kw=dict(padding=1)),
    '1x-groups-stride-dilation': dict(args=(8, 12, 3), kw=dict(stride=2, padding=2, dilation=2, groups=2, bias=True)),
    '4x-1x1-stride': dict(args=(8, 16, 1), kw=dict(stride=2, cell_num_ratio=4)),
    '1/2x-half-cells': dict(args=(8, 8, 3), kw=dict(padding=1, cell_num_ratio=0.5, cell_in_ratio=0.5,
                                                     cell_out_ratio=0.5)),
    '1/4x-5x3-kernel': dict(args=(4, 8, (3, 5)), kw=dict(padding=(1, 2), cell_num_ratio=0.25, cell_in_ratio=0.5,
                                                          cell_out_ratio=0.5, bias=True)),
    '2x-depthwise': dict(args=(6, 6, 3), kw=dict(padding=1, groups=6, cell_num_ratio=2)),
}


@pytest.mark.parametrize('tau', [0.0, 0.35, 1.0])
@pytest.mark.parametrize('case', sorted(CASES))
def test_values_and_gradients_match_the_oracle(case, tau):
    torch.manual_seed(0)
    layer = KernelWarehouseConv(*CASES[case]['args'], **CASES[case]['kw']).double()
    layer.temperature = tau
    with torch.no_grad():
        layer.attention.norm.running_mean.normal_()
        layer.attention.norm.running_var.uniform_(0.5, 2)
        if layer.bias is not None:
            layer.bias.normal_()
    for training, shape in ((True, (3, layer.in_channels, 7, 6)), (False, (2, layer.in_channels, 5, 9)),
                            (True, (1, layer.in_channels, 4, 5))):
        check_against_oracle(layer, torch.randn(shape, dtype=torch.float64), training)


def test_shared_warehouse_with_a_basis_matches_the_oracle():
    """Three convs on one warehouse, the second with the release's non-local basis: each against the oracle."""
    torch.manual_seed(1)
    shapes = [(8, 8, 3, 3), (16, 8, 1, 1), (8, 16, 1, 1)]
    wh = Warehouse(shapes, cell_num_ratio=1).double()
    convs = [KernelWarehouseConv(s[1], s[0], s[2], padding=s[2] // 2, warehouse=wh, warehouse_slot=i,
                                 nonlocal_basis_ratio=0.5 if i == 1 else 1.0, temperature=0.2).double()
             for i, s in enumerate(shapes)]
    assert convs[1].attention.fc3 is not None and convs[0].attention.fc3 is None
    for conv in convs:
        wh.cells.grad = None
        check_against_oracle(conv, torch.randn(2, conv.in_channels, 5, 6, dtype=torch.float64), True)


def test_cell_assignment_rules():
    for ratio, m in ((1, 9), (4, 9), (0.5, 36), (0.25, 64), (0.5, 9)):
        wh = Warehouse([(4, 4, 3, 3), (8, 4, 3, 3)], cell_num_ratio=ratio, cell_in_ratio=0.25, cell_out_ratio=0.25) \
            if m > 9 else Warehouse([(4, 4, 3, 3), (8, 4, 3, 3)], cell_num_ratio=ratio)
        got = [wh.assignment(slot).tolist() for slot in (0, 1)]
        m0, m1 = (wh.num_mixtures(s) for s in wh.kernel_shapes)
        first1 = wh.first_cell(1)
        assert got[0] == expected_assignment(m0, ratio, 0, wh.num_cells)
        assert got[1] == expected_assignment(m1, ratio, first1, wh.num_cells)
        used = [j for row in got for j in row if j < wh.num_cells]
        assert len(set(used)) == len(used)                                     # no cell assigned twice
        if ratio >= 1:
            assert wh.num_cells == ratio * (m0 + m1) and first1 == ratio * m0
        else:
            assert wh.num_cells == len(used)                                   # every cell is someone's


def test_cell_sizes_follow_the_channel_gcd():
    wh = Warehouse([(64, 64, 3, 3), (256, 64, 1, 1), (64, 256, 1, 1), (512, 256, 1, 1)])
    assert (wh.cell_out, wh.cell_in) == (64, 64) and wh.num_cells == 9 + 4 + 4 + 8 * 4
    half = Warehouse([(64, 64, 3, 3), (256, 64, 1, 1)], cell_num_ratio=0.5, cell_in_ratio=0.5, cell_out_ratio=0.5)
    assert (half.cell_out, half.cell_in) == (32, 32) and half.num_cells == (36 + 16) // 2


def test_shared_warehouse_is_referenced_not_owned():
    torch.manual_seed(0)
    wh = Warehouse([(8, 8, 3, 3), (8, 8, 3, 3)])
    a, b = (KernelWarehouseConv(8, 8, 3, padding=1, warehouse=wh, warehouse_slot=i) for i in (0, 1))
    assert a.warehouse is b.warehouse is wh and a.shares_warehouse
    assert not any('warehouse' in k for k in a.state_dict())
    assert all(p is not wh.cells for p in a.parameters())
    model = nn.ModuleDict(dict(wh=wh, a=a, b=b))
    assert sum(p.numel() for p in model.parameters()) == wh.cells.numel() + sum(
        p.numel() for conv in (a, b) for p in conv.parameters())
    # gradients from both convs accumulate in the shared cells
    x = torch.randn(2, 8, 5, 5)
    grads = []
    for conv in (a, b):
        wh.cells.grad = None
        conv(x).square().sum().backward()
        grads.append(wh.cells.grad.clone())
    wh.cells.grad = None
    (a(x).square().sum() + b(x).square().sum()).backward()
    torch.testing.assert_close(wh.cells.grad, grads[0] + grads[1])
    assert grads[0][:9].abs().sum() > 0 and grads[1][9:].abs().sum() > 0
    clone = copy.deepcopy(model)
    assert clone['a'].warehouse is clone['wh'] and clone['b'].warehouse is clone['wh']
    unpickled = pickle.loads(pickle.dumps(model))
    assert unpickled['a'].warehouse is unpickled['wh']
    model.double()
    assert a.warehouse.cells.dtype == torch.float64 and a(x.double()).dtype == torch.float64


@pytest.mark.parametrize('ratio', [1, 2, 4])
def test_a_plain_conv_checkpoint_starts_exactly_at_the_plain_conv(ratio):
    torch.manual_seed(0)
    plain = nn.Conv2d(8, 12, 3, stride=2, padding=1, groups=2, bias=True).double()
    layer = KernelWarehouseConv(8, 12, 3, stride=2, padding=1, groups=2, bias=True, cell_num_ratio=ratio).double()
    result = layer.load_state_dict(plain.state_dict(), strict=False)
    assert not result.unexpected_keys and not [k for k in result.missing_keys if not k.startswith('attention.')]
    assert layer.temperature == 1.0
    x = torch.randn(3, 8, 9, 7, dtype=torch.float64)
    for training in (True, False):
        layer.train(training)
        torch.testing.assert_close(layer(x), plain(x), rtol=0, atol=1e-13)
    layer.temperature = 0.9   # the hook's first annealing step: the attention takes over, the kernel moves
    assert (layer(x) - plain(x)).abs().max() > 1e-6


def test_a_plain_conv_checkpoint_at_half_the_cells_starts_from_the_assigned_blocks():
    """1/2×: only the cells with a warehouse cell of their own load their block; the others are the zero cell."""
    torch.manual_seed(0)
    plain = nn.Conv2d(8, 8, 3, padding=1, bias=False).double()
    layer = KernelWarehouseConv(8, 8, 3, padding=1, bias=False, cell_num_ratio=0.5, cell_in_ratio=0.5,
                                cell_out_ratio=0.5).double()
    layer.load_state_dict(plain.state_dict(), strict=False)
    kept = torch.zeros_like(plain.weight)
    for t, j in enumerate(layer.warehouse.assignment(0).tolist()):
        s, o, g = t // 4, (t // 2) % 2, t % 2
        if j < layer.warehouse.num_cells:
            kept[o * 4:(o + 1) * 4, g * 4:(g + 1) * 4, s // 3, s % 3] = 1
    assert kept.mean() == 0.5
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(layer(x), F.conv2d(x, plain.weight * kept, padding=1), rtol=0, atol=1e-13)


def test_plain_checkpoint_of_the_wrong_shape_is_an_error():
    layer = KernelWarehouseConv(8, 8, 3, padding=1)
    with pytest.raises(RuntimeError, match='plain conv weight of shape'):
        layer.load_state_dict(nn.Conv2d(8, 8, 1).state_dict(), strict=False)


def test_temperature_hook_anneals_like_the_release():
    """TemperatureAnnealHook(start=1, end=0) gives the release's get_temperature (engine.py) at every iteration."""
    from mmdynconv.layers import TemperatureAnnealHook

    def release(iteration, epoch, per_epoch, temp_epoch, init=1.0, end=0.0):
        total, current = per_epoch * temp_epoch, per_epoch * epoch + iteration
        return end + max(0, (init - end) * ((total - current) / max(1.0, total)))

    hook = TemperatureAnnealHook(start=1.0, end=0.0, anneal=2)
    for t in range(35):
        assert math.isclose(hook.temperature(t, 10), release(t % 10 + 1, t // 10, 10, 2), abs_tol=1e-12)
    layer = KernelWarehouseConv(4, 4, 3)
    assert TemperatureAnnealHook.set_temperature(nn.Sequential(layer), 0.25) == 1 and layer.temperature == 0.25
    with pytest.raises(ValueError, match='end must be a number >= 0'):
        TemperatureAnnealHook(start=1.0, end=-0.1)


def relative(actual, expected):
    return float((actual - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize('index', range(4))
def test_matches_the_release(index):
    """Recorded by tools/kernel_warehouse_release_parity.py from OSVAI/KernelWarehouse a4ac17d: a warehouse shared by
    2 convs (1×, 4×, 1/2× with the non-local basis, grouped and dilated), float64, eval and train mode."""
    case = torch.load(FIXTURE, weights_only=True)['cases'][index]
    options = {RELEASE_OPTIONS[k]: v for k, v in case['options'].items()}
    basis = options.pop('nonlocal_basis_ratio', 1.0)
    convs = case['convs']
    wh = Warehouse([(co, ci // g, k, k) for ci, co, k, s, p, d, g in convs], **options).double()
    layers = [KernelWarehouseConv(ci, co, k, stride=s, padding=p, dilation=d, groups=g, bias=False,
                                  temperature=case['tau'], warehouse=wh, warehouse_slot=i, nonlocal_basis_ratio=basis,
                                  **options).double() for i, (ci, co, k, s, p, d, g) in enumerate(convs)]
    with torch.no_grad():
        wh.cells.copy_(case['state']['cells'])
    for layer, state in zip(layers, case['state']['convs']):
        layer.load_state_dict(state, strict=True)
    for mode in ('eval', 'train'):
        expected = case[mode]
        wh.cells.grad = None
        grads = {}
        for i, (layer, x, g) in enumerate(zip(layers, case['x'], case['grad_out'])):
            layer.train(mode == 'train')
            layer.zero_grad()
            x = x.double().requires_grad_()
            y = layer(x)
            y.backward(g.double())
            assert relative(y.detach(), expected['y'][i]) < 1e-13, (mode, i)
            if mode == 'train':
                assert relative(x.grad, expected['grad_x'][i]) < 1e-13, i
                grads.update({f'{i}.{n}': p.grad for n, p in layer.named_parameters()})
    grads['cells'] = wh.cells.grad
    assert sorted(grads) == sorted(expected['grads'])
    for name, g in expected['grads'].items():
        assert relative(grads[name], g) < 1e-13, name
    for layer, stats in zip(layers, expected['running_stats']):
        norm = layer.attention.norm
        assert relative(torch.cat([norm.running_mean, norm.running_var]), stats) < 1e-13


@needs_custom_ops   # torch.compile of the whole layer (test_compile_layers.py's condition)
def test_changing_the_temperature_does_not_recompile():
    """τ is a buffer, not a Python float that Dynamo would specialise on (the hook changes it every iteration)."""
    from torch._dynamo.testing import CompileCounter
    torch.manual_seed(0)
    layer = KernelWarehouseConv(8, 8, 3, padding=1)
    counter = CompileCounter()
    compiled = torch.compile(layer, backend=counter, fullgraph=True)
    x = torch.randn(2, 8, 5, 5)
    for tau in (1.0, 0.7, 0.2):
        layer.temperature = tau
        torch.testing.assert_close(compiled(x), layer(x))
    assert counter.frame_count == 1


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(cell_num_ratio=0.3), ValueError, 'cell_num_ratio must be an integer >= 1 or 1/k'),
    (dict(cell_num_ratio=1.5), ValueError, 'cell_num_ratio must be an integer >= 1 or 1/k'),
    (dict(cell_num_ratio=True), ValueError, 'cell_num_ratio must be'),
    (dict(cell_in_ratio=0), ValueError, r'cell_in_ratio must be a number in \(0, 1\]'),
    (dict(cell_out_ratio=2), ValueError, r'cell_out_ratio must be a number in \(0, 1\]'),
    (dict(cell_out_ratio=0.4), ValueError, 'cell_out_ratio 0.4 gives cells of 4 channels, which must divide'),
    (dict(reduction=0), ValueError, 'reduction must be a number > 0'),
    (dict(min_hidden=0), ValueError, 'min_hidden must be >= 1'),
    (dict(eps=-1.0), ValueError, 'eps must be a number > 0'),
    (dict(nonlocal_basis_ratio=0), ValueError, 'nonlocal_basis_ratio must be a number > 0'),
    (dict(temperature='1'), TypeError, 'temperature must be a number'),
    (dict(groups=4), ValueError, r'groups \(4\) must divide in_channels \(6\)'),
    (dict(bias=1), TypeError, 'bias must be a bool'),
    (dict(warehouse='shared'), TypeError, 'warehouse must be a Warehouse or None'),
    (dict(warehouse=Warehouse([(10, 6, 3, 3)]), warehouse_slot=1), ValueError, 'warehouse_slot 1 must name a slot'),
    (dict(warehouse=Warehouse([(10, 6, 1, 1)])), ValueError, r'for this kernel shape \(10, 6, 3, 3\)'),
    (dict(warehouse=Warehouse([(10, 6, 3, 3)], cell_num_ratio=4)), ValueError,
     r"must be the shared warehouse's \(4.0, 1.0, 1.0\)"),
])
def test_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=f'^KernelWarehouse( warehouse)?: .*{match}'):
        KernelWarehouseConv(6, 10, 3, **kwargs)


def test_wrong_input_is_a_clear_error():
    with pytest.raises(ValueError, match=r'^KernelWarehouse: input must be \(B, 6, H, W\), got \(2, 5, 4, 4\)'):
        KernelWarehouseConv(6, 10, 3)(torch.randn(2, 5, 4, 4))


@needs_openmmlab
@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_builds_through_build_conv_layer(scope):
    from mmcv.cnn import build_conv_layer
    from mmengine.registry import DefaultScope
    __import__(f'{scope}.registry')
    with DefaultScope.overwrite_default_scope(scope):
        layer = build_conv_layer(dict(type='KernelWarehouse', cell_num_ratio=4), 16, 32, 3, stride=2, padding=1,
                                 bias=False)
    assert isinstance(layer, KernelWarehouseConv) and layer.warehouse.num_cells == 4 * 9
    assert layer(torch.randn(2, 16, 9, 9)).shape == (2, 32, 5, 5)
