"""Compare our DCD layer with the authors' released modules in float64, and record the fixture the tests replay.

The release (liyunsheng13/dcd, ``models/imagenet/resnet_dcd.py``) is not part of this repository: pass the path of
that file. It is imported as it is; an import this environment lacks is replaced by an empty stub module. For
every case the release's ``conv_dy`` (its bottleneck convs, 1×1 and 3×3) or ``conv_basic_dy`` (its BasicBlock 3×3
conv, 2×2-pooled descriptor) is built, every parameter and BatchNorm statistic is moved away from its
initialisation (seeded, rounded to float32 so that the fixture stores them exactly) and the module is run in
float64. Its state dict loads into our ``DCDConv`` (release names converted by
:func:`mmdynconv.layers.dcd_conv.convert_release_state_dict`), built with the same arguments and the release's
trunk width; both run the same input and output gradient in eval and then in train mode. Printed per case: the
largest relative difference max|ours − release| / max|release| of the output, the input gradient, any parameter
gradient and the BatchNorm running statistics after the training step; then the worst over all cases.

    python tools/dcd_release_parity.py /path/to/dcd/models/imagenet/resnet_dcd.py
    python tools/dcd_release_parity.py /path/to/resnet_dcd.py --record tests/fixtures/dcd_release_6a5e27f.pt
"""
import argparse
import importlib.util
import types

import torch
from torch import nn

from mmdynconv.layers import DCDConv
from mmdynconv.layers.dcd_conv import RELEASE_KEYS
from mmdynconv.utils.release_import import import_file

# release module, Ci, Co, k, stride, padding, (B, H, W), recorded in the fixture
CASES = [
    ('conv_dy', 16, 6, 3, 1, 1, (2, 4, 4), True),
    ('conv_dy', 16, 6, 3, 2, 1, (2, 5, 4), True),
    ('conv_dy', 16, 8, 1, 1, 0, (2, 3, 3), True),
    ('conv_dy', 16, 8, 1, 2, 0, (2, 5, 3), True),
    ('conv_basic_dy', 8, 6, 3, 2, 1, (2, 5, 4), True),
    ('conv_dy', 64, 64, 3, 1, 1, (4, 9, 9), False),
    ('conv_dy', 64, 256, 1, 1, 0, (4, 7, 7), False),
    ('conv_dy', 128, 128, 3, 2, 1, (4, 9, 8), False),
    ('conv_basic_dy', 64, 128, 3, 2, 1, (4, 9, 9), False),
    ('conv_basic_dy', 128, 128, 3, 1, 1, (2, 7, 7), False),
]


def import_release(path):
    """The release's ``resnet_dcd`` module; imports missing here are stubbed while it loads."""
    stubs = {}
    for name in ('torch.utils.model_zoo',):
        if importlib.util.find_spec(name) is None:
            stubs[name] = types.ModuleType(name)
    module = import_file(path, 'dcd_release_module', stubs)
    return module


def build_release(release, kind, ci, co, k, stride, padding, seed):
    """The release module, perturbed (float32-representable values), in float64."""
    torch.manual_seed(seed)
    if kind == 'conv_dy':
        module = release.conv_dy(ci, co, k, stride, padding)
    else:
        assert (k, padding) == (3, 1), 'conv_basic_dy is a 3x3 conv with padding 1'
        module = release.conv_basic_dy(ci, co, stride)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            scale = 0.3 if p.dim() < 2 or p.numel() < 2 else float(p.std()) + 0.05
            p.add_(torch.randn(p.shape, generator=gen) * scale)
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
    return module.double()


def ours_like(release_module, kind, ci, co, k, stride, padding):
    layer = DCDConv(ci, co, k, stride=stride, padding=padding, bias=False,
                    pool_size=1 if kind == 'conv_dy' else 2, squeeze=release_module.fc[0].out_features).double()
    if layer.dim != release_module.dim:
        raise RuntimeError(f'latent dim {layer.dim} != the release\'s {release_module.dim}')
    return layer


def run(layer, x0, grad_out, training):
    """Output, input gradient and parameter gradients (release names) of one forward/backward."""
    layer.train(training)
    layer.zero_grad()
    x = x0.detach().clone().requires_grad_()
    y = layer(x)
    y.backward(grad_out)
    names = {new: old for old, new in RELEASE_KEYS.items()}
    return dict(y=y.detach(), grad_x=x.grad, grads={names.get(n, n): p.grad for n, p in layer.named_parameters()})


def running_stats(layer):
    names = {new: old for old, new in RELEASE_KEYS.items()}
    return {names.get(n, n): b.clone() for n, b in layer.named_buffers() if b.is_floating_point()}


def rel(a, b):
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise RuntimeError('non-finite values')
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-300))


def compare(release, case, seed):
    """(worst relative differences, the fixture record) of one case."""
    kind, ci, co, k, stride, padding, (b, h, w), _ = case
    theirs = build_release(release, kind, ci, co, k, stride, padding, seed)
    state = {n: v.clone() for n, v in theirs.state_dict().items()}
    ours = ours_like(theirs, kind, ci, co, k, stride, padding)
    ours.load_state_dict({n: v.clone() for n, v in state.items()})
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(b, ci, h, w, generator=gen).double()
    record = dict(module=kind, args=dict(in_channels=ci, out_channels=co, kernel_size=k, stride=stride,
                                         padding=padding, bias=False),
                  ours=dict(pool_size=1 if kind == 'conv_dy' else 2, squeeze=theirs.fc[0].out_features),
                  state_dict={n: (v.float() if v.is_floating_point() else v) for n, v in state.items()},
                  x=x.float())
    with torch.no_grad():
        grad_out = torch.randn(theirs.eval()(x).shape, generator=gen).double()
    record['grad_out'] = grad_out.float()
    worst = dict(y=0.0, grad_x=0.0, grads=0.0, running_stats=0.0)
    for mode in ('eval', 'train'):
        expected = run(theirs, x, grad_out, mode == 'train')
        got = run(ours, x, grad_out, mode == 'train')
        if set(expected['grads']) != set(got['grads']):
            raise RuntimeError(f'parameter names differ: {sorted(set(expected["grads"]) ^ set(got["grads"]))}')
        worst['y'] = max(worst['y'], rel(got['y'], expected['y']))
        worst['grad_x'] = max(worst['grad_x'], rel(got['grad_x'], expected['grad_x']))
        worst['grads'] = max([worst['grads']] + [rel(got['grads'][n], g) for n, g in expected['grads'].items()])
        record[mode] = expected
        if mode == 'train':
            stats = running_stats(theirs)
            mine = running_stats(ours)
            worst['running_stats'] = max(rel(mine[n], v) for n, v in stats.items())
            record['train']['running_stats'] = stats
    return worst, record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('release', help='path of the release\'s models/imagenet/resnet_dcd.py')
    parser.add_argument('--record', metavar='PATH', help='write the recorded cases to this fixture file')
    parser.add_argument('--commit', default='6a5e27f', help='the release commit the file is from (stored)')
    args = parser.parse_args(argv)
    release = import_release(args.release)
    torch.set_num_threads(1)
    overall, records = dict(y=0.0, grad_x=0.0, grads=0.0, running_stats=0.0), []
    for seed, case in enumerate(CASES):
        worst, record = compare(release, case, seed)
        kind, ci, co, k, stride, padding, (b, h, w), recorded = case
        print(f'{kind:13s} Ci={ci:3d} Co={co:3d} k={k} stride={stride} B={b} HxW={h}x{w}: '
              + ', '.join(f'{key} {value:.1e}' for key, value in worst.items()), flush=True)
        overall = {key: max(overall[key], worst[key]) for key in overall}
        if recorded:
            records.append(record)
    print(f'worst over {len(CASES)} cases (float64, eval and train): '
          + ', '.join(f'{key} {value:.1e}' for key, value in overall.items()))
    if args.record:
        torch.save(dict(commit=args.commit, file='models/imagenet/resnet_dcd.py', torch=str(torch.__version__),
                        cases=records), args.record)
        print(f'recorded {len(records)} cases in {args.record}')


if __name__ == '__main__':
    main()
