"""Compare our KernelWarehouse with the authors' released module in float64, and record the fixture the tests replay.

The release (OSVAI/KernelWarehouse, ``modules/kernel_warehouse.py``) is not part of this repository: pass the path of
that file. It is imported as it is (an import this environment lacks would be replaced by an empty stub module). Each
case is a small network of 2-3 convs reserved in one warehouse of the release's ``Warehouse_Manager`` (``store`` and
``allocate`` as its backbones call them), every parameter and BatchNorm statistic moved away from its initialisation
(seeded, rounded to float32 so that the fixture stores them exactly), the temperature set, float64 (also the
attention's ``temp_bias``, a plain tensor attribute that ``.double()`` leaves in float32). Ours: one
:class:`~mmdynconv.layers.kernel_warehouse.Warehouse` planned for the same kernels and a ``KernelWarehouseConv`` per
slot referencing it, with the release's cells, attention parameters and statistics copied in (:func:`our_state`);
the assignment β must equal the release's ``temp_bias``. Each conv gets its own input and output gradient; all run
in eval and then in train mode. Printed per case: the largest relative difference max|ours − release| /
max|release| of the outputs, the input gradients, every parameter gradient (the shared cells' accumulated over the
convs) and the BatchNorm running statistics after the training step; then the worst over all cases. The fixture
keeps, per recorded case, the inputs, the release's tensors (float32) and its float64 outputs (eval and train), input
and parameter gradients and running statistics (train).

    python tools/kernel_warehouse_release_parity.py /path/to/KernelWarehouse/modules/kernel_warehouse.py
    python tools/kernel_warehouse_release_parity.py /path/to/kernel_warehouse.py \
        --record tests/fixtures/kernel_warehouse_release_a4ac17d.pt
"""
import argparse
import importlib.util
import types

import torch
from torch import nn

from mmdynconv.layers import KernelWarehouseConv
from mmdynconv.layers.kernel_warehouse import Warehouse
from mmdynconv.utils.release_import import import_file

# (Ci, Co, k, stride, padding, dilation, groups) per conv; warehouse options (the release's names); τ; (B, H, W);
# recorded in the fixture
CASES = [
    ([(4, 4, 3, 1, 1, 1, 1), (4, 8, 1, 2, 0, 1, 1)], dict(cell_num_ratio=1), 0.3, (2, 3, 4), True),
    ([(4, 4, 3, 1, 1, 1, 1), (4, 8, 1, 1, 0, 1, 1), (8, 4, 1, 2, 0, 1, 1)], dict(cell_num_ratio=1), 0.3, (3, 4, 5),
     False),
    ([(4, 8, 1, 1, 0, 1, 1), (8, 4, 1, 2, 0, 1, 1)], dict(cell_num_ratio=4), 0.0, (2, 3, 4), True),
    ([(4, 4, 1, 1, 0, 1, 1), (4, 4, 1, 2, 0, 1, 1)],
     dict(cell_num_ratio=0.5, cell_inplane_ratio=0.5, cell_outplane_ratio=0.5, nonlocal_basis_ratio=0.25), 0.0,
     (2, 3, 4), True),
    ([(8, 8, 3, 1, 2, 2, 2), (8, 8, 1, 2, 0, 1, 2)], dict(cell_num_ratio=1), 0.6, (2, 4, 3), True),
    ([(4, 8, 1, 1, 0, 1, 1), (8, 4, 1, 2, 0, 1, 1)],
     dict(cell_num_ratio=0.5, cell_inplane_ratio=0.5, cell_outplane_ratio=0.5), 1.0, (3, 4, 5), False),
    ([(4, 4, 3, 2, 1, 1, 1), (4, 8, 1, 1, 0, 1, 1)], dict(cell_num_ratio=4), 0.8, (3, 5, 6), False),
    ([(4, 8, 1, 1, 0, 1, 1), (8, 4, 1, 2, 0, 1, 1), (8, 8, 1, 1, 0, 1, 2)],
     dict(cell_num_ratio=0.5, cell_inplane_ratio=0.5, cell_outplane_ratio=0.5, nonlocal_basis_ratio=0.25), 0.4,
     (3, 4, 5), False),
    ([(4, 4, 3, 1, 1, 1, 1), (4, 8, 1, 1, 0, 1, 1)],
     dict(cell_num_ratio=0.25, cell_inplane_ratio=0.5, cell_outplane_ratio=0.5), 0.5, (2, 5, 5), False),
    ([(64, 64, 3, 1, 1, 1, 1), (64, 256, 1, 1, 0, 1, 1), (256, 64, 1, 1, 0, 1, 1)], dict(cell_num_ratio=1), 0.2,
     (4, 7, 7), False),
    ([(64, 64, 3, 2, 1, 1, 1), (64, 256, 1, 1, 0, 1, 1), (256, 128, 1, 1, 0, 1, 1)], dict(cell_num_ratio=4), 0.0,
     (2, 9, 8), False),
    ([(64, 64, 3, 1, 1, 1, 1), (64, 256, 1, 1, 0, 1, 1), (256, 64, 1, 1, 0, 1, 1)],
     dict(cell_num_ratio=0.5, cell_inplane_ratio=0.5, cell_outplane_ratio=0.5, nonlocal_basis_ratio=0.0625), 0.1,
     (2, 6, 6), False),
]
OURS = dict(cell_num_ratio='cell_num_ratio', cell_inplane_ratio='cell_in_ratio', cell_outplane_ratio='cell_out_ratio')
NORM_KEYS = ('weight', 'bias', 'running_mean', 'running_var')
# the release's attention parameter names -> ours (under ``attention.``)
RELEASE_NAMES = {'fc1.weight': 'fc1.weight', 'norm1.weight': 'norm.weight', 'norm1.bias': 'norm.bias',
                 'fc2.weight': 'fc2.weight', 'fc2.bias': 'fc2.bias', 'fc3.weight': 'fc3.weight',
                 'basis_bias': 'basis_bias'}


def import_release(path):
    """The release's ``kernel_warehouse`` module; imports missing here are stubbed while it loads."""
    stubs = {name: types.ModuleType(name) for name in ('torch.autograd',) if importlib.util.find_spec(name) is None}
    module = import_file(path, 'kernel_warehouse_release_module', stubs)
    return module


def build_release(release, convs, options, tau, seed):
    """The release's network (``manager``, ``convs``), perturbed (float32-representable values), in float64."""
    torch.manual_seed(seed)
    manager = release.Warehouse_Manager(reduction=0.0625, sharing_range=(), **options)
    net = nn.Module()
    net.convs = nn.ModuleList(manager.reserve(ci, co, k, stride=s, padding=p, dilation=d, groups=g, bias=False,
                                              warehouse_name='stage0_layer0_conv0')
                              for ci, co, k, s, p, d, g in convs)
    manager.store()
    manager.allocate(net)
    net.manager = manager
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            scale = 0.3 if p.dim() < 2 else float(p.std()) + 0.05
            p.add_(torch.randn(p.shape, generator=gen) * scale)
            p.copy_(p.float())
        for m in net.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen).float())
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen).float() * 1.5 + 0.5)
            if hasattr(m, 'update_temperature'):
                m.update_temperature(tau)
    net.double()
    for m in net.modules():   # a plain tensor attribute, which .double() leaves in float32 (τ·β would round)
        if hasattr(m, 'temp_bias'):
            m.temp_bias = m.temp_bias.double()
    return net


def our_state(release_net):
    """The release network's tensors under our names: {'cells': (n, c_o, c_i), 'convs': [conv state dicts]}."""
    cells = release_net.manager.weights[0].detach()
    convs = []
    for conv in release_net.convs:
        att = conv.attention
        state = {'attention.fc1.weight': att.fc1.weight, 'attention.fc2.weight': att.fc2.weight}
        state.update({f'attention.norm.{k}': getattr(att.norm1, k) for k in NORM_KEYS + ('num_batches_tracked',)})
        if att.fc2.bias is not None:
            state['attention.fc2.bias'] = att.fc2.bias
        if hasattr(att, 'fc3'):
            state.update({'attention.fc3.weight': att.fc3.weight, 'attention.basis_bias': att.basis_bias})
        convs.append({k: v.detach().clone() for k, v in state.items()})
    return dict(cells=cells.reshape(cells.shape[:3]).clone(), convs=convs)


def build_ours(convs, options, tau, state):
    """Our warehouse and convs for ``convs`` with the tensors of ``state`` (:func:`our_state`), in float64."""
    ours = {OURS[k]: v for k, v in options.items() if k in OURS}
    basis = options.get('nonlocal_basis_ratio', 1.0)
    warehouse = Warehouse([(co, ci // g, k, k) for ci, co, k, s, p, d, g in convs], **ours).double()
    layers = [KernelWarehouseConv(ci, co, k, stride=s, padding=p, dilation=d, groups=g, bias=False, temperature=tau,
                                  warehouse=warehouse, warehouse_slot=i, nonlocal_basis_ratio=basis, **ours).double()
              for i, (ci, co, k, s, p, d, g) in enumerate(convs)]
    with torch.no_grad():
        warehouse.cells.copy_(state['cells'])
    for layer, conv_state in zip(layers, state['convs']):
        layer.load_state_dict(conv_state, strict=True)
    return warehouse, layers


def run(cells, layers, xs, grad_outs, training):
    """Outputs, input gradients and parameter gradients (ours: conv index.name, and 'cells') of one step."""
    cells.grad = None
    result = dict(y=[], grad_x=[], grads={})
    for i, (layer, x0, g) in enumerate(zip(layers, xs, grad_outs)):
        layer.train(training)
        layer.zero_grad()
        x = x0.detach().clone().requires_grad_()
        y = layer(x)
        y.backward(g)
        result['y'].append(y.detach())
        result['grad_x'].append(x.grad)
        result['grads'].update({f'{i}.{n}': p.grad for n, p in layer.named_parameters()})
    result['grads']['cells'] = cells.grad.clone()
    return result


def release_step(net, xs, grad_outs, training):
    """:func:`run` for the release network, gradients under our names."""
    net.train(training)
    net.zero_grad()
    result = dict(y=[], grad_x=[], grads={})
    for i, (conv, x0, g) in enumerate(zip(net.convs, xs, grad_outs)):
        x = x0.detach().clone().requires_grad_()
        y = conv(x)
        y.backward(g)
        result['y'].append(y.detach())
        result['grad_x'].append(x.grad)
        result['grads'].update({f'{i}.attention.{RELEASE_NAMES[n]}': p.grad
                                for n, p in conv.attention.named_parameters()})
    result['grads']['cells'] = net.manager.weights[0].grad.reshape(net.manager.weights[0].shape[:3]).clone()
    return result


def rel(a, b):
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise RuntimeError('non-finite values')
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-300))


def running_stats(modules):
    return [torch.cat([m.running_mean, m.running_var]) for m in modules]


def compare(release, case, seed):
    """(worst relative differences, the fixture record) of one case."""
    convs, options, tau, (b, h, w), _ = case
    theirs = build_release(release, convs, options, tau, seed)
    state = our_state(theirs)
    warehouse, ours = build_ours(convs, options, tau, state)
    if warehouse.num_cells != state['cells'].shape[0]:
        raise RuntimeError(f'warehouse sizes differ: {warehouse.num_cells} != {state["cells"].shape[0]}')
    for layer, conv in zip(ours, theirs.convs):
        beta = conv.attention.temp_bias.view(-1, warehouse.num_cells + 1).to(layer.attention.assigned)
        if not torch.equal(layer.attention.assigned, beta):
            raise RuntimeError(f'cell assignments differ for conv {layer.warehouse_slot}')
    gen = torch.Generator().manual_seed(seed + 1)
    xs = [torch.randn(b, c[0], h, w, generator=gen).double() for c in convs]
    with torch.no_grad():
        grad_outs = [torch.randn(conv.eval()(x).shape, generator=gen).double() for conv, x in zip(theirs.convs, xs)]
    record = dict(convs=convs, options=options, tau=tau,
                  state=dict(cells=state['cells'].float(), convs=[{k: v.float() if v.is_floating_point() else v
                                                                  for k, v in s.items()} for s in state['convs']]),
                  x=[x.float() for x in xs], grad_out=[g.float() for g in grad_outs])
    worst = dict(y=0.0, grad_x=0.0, grads=0.0, running_stats=0.0)
    for mode in ('eval', 'train'):
        expected = release_step(theirs, xs, grad_outs, mode == 'train')
        got = run(warehouse.cells, ours, xs, grad_outs, mode == 'train')
        if set(expected['grads']) != set(got['grads']):
            raise RuntimeError(f'parameter names differ: {sorted(set(expected["grads"]) ^ set(got["grads"]))}')
        worst['y'] = max([worst['y']] + [rel(a, e) for a, e in zip(got['y'], expected['y'])])
        worst['grad_x'] = max([worst['grad_x']] + [rel(a, e) for a, e in zip(got['grad_x'], expected['grad_x'])])
        worst['grads'] = max([worst['grads']] + [rel(got['grads'][n], g) for n, g in expected['grads'].items()])
        record[mode] = expected if mode == 'train' else dict(y=expected['y'])
    stats = running_stats(c.attention.norm1 for c in theirs.convs)
    worst['running_stats'] = max(rel(a, e) for a, e in zip(running_stats(c.attention.norm for c in ours), stats))
    record['train']['running_stats'] = stats
    return worst, record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('release', help='path of the release\'s modules/kernel_warehouse.py')
    parser.add_argument('--record', metavar='PATH', help='write the recorded cases to this fixture file')
    parser.add_argument('--commit', default='a4ac17d', help='the release commit the file is from (stored)')
    args = parser.parse_args(argv)
    release = import_release(args.release)
    torch.set_num_threads(1)
    overall, records = dict(y=0.0, grad_x=0.0, grads=0.0, running_stats=0.0), []
    for seed, case in enumerate(CASES):
        worst, record = compare(release, case, seed)
        convs, options, tau, (b, h, w), recorded = case
        shapes = ' '.join(f'{ci}->{co} k{k} s{s} d{d} g{g}' for ci, co, k, s, p, d, g in convs)
        print(f'[{shapes}] {options} tau={tau} B={b} HxW={h}x{w}: '
              + ', '.join(f'{key} {value:.1e}' for key, value in worst.items()), flush=True)
        overall = {key: max(overall[key], worst[key]) for key in overall}
        if recorded:
            records.append(record)
    print(f'worst over {len(CASES)} cases (float64, eval and train): '
          + ', '.join(f'{key} {value:.1e}' for key, value in overall.items()))
    if args.record:
        torch.save(dict(commit=args.commit, file='modules/kernel_warehouse.py', torch=str(torch.__version__),
                        cases=records), args.record)
        print(f'recorded {len(records)} cases in {args.record}')


if __name__ == '__main__':
    main()
