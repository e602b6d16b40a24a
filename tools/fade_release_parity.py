"""Measure how far our FADE is from the authors' released modules, in float64, and record a test fixture.

The release (github.com/poppinace/fade) is not part of this repository: pass the path of ``FADE_L2H.py`` (the IJCV
version: ``FADE``, ``FADELite``, ``SemiShiftUp``) and / or ``FADE_H2L.py`` (the ECCV version: ``FADE``, whose
semi-shift convolution pads the encoder feature four ways and convolves with stride 2; its reshape assumes square
inputs, so it is run on square inputs only). Both import ``carafe`` from ``mmcv.ops`` (a CUDA-only kernel) and
``xavier_init`` from ``mmcv.cnn``: while a file is imported these are replaced by stand-ins in this tool, a
pure-PyTorch unfold implementation of mmcv's CARAFE (:func:`carafe_stand_in`) and mmcv's Xavier initialisation;
nothing else is changed.

For every case the release's module is built, every parameter moved off its initialisation (seeded), its state dict
converted (:func:`mmdynconv.layers.fade_upsample.convert_release_state_dict`) and loaded into our ``FADE`` with the
matching options; both run the same encoder feature (our guidance) and decoder feature (our input) and the output
gradient ``linspace(-1, 1)``. Printed per case: the largest relative difference max|ours − release| / max|release|
of the output, the gradients of both inputs and every parameter gradient; then the worst of all cases.

    python tools/fade_release_parity.py /path/to/fade/FADE_L2H.py /path/to/fade/FADE_H2L.py
    python tools/fade_release_parity.py FADE_L2H.py FADE_H2L.py --record e4de4db   # writes the test fixture

``--record COMMIT`` writes ``tests/fixtures/fade_release_<COMMIT>.pt`` (COMMIT: the release's short commit hash): a
few small cases (the release's own ``SemiShift`` built with ``embedding_dim=8`` instead of 64, to keep the file
small), each with the release-layout state dict, the inputs, the release's output and its input and parameter
gradients (float64). ``tests/layers/test_fade.py`` loads them into our layer and compares.
"""
import argparse
import itertools
import os.path as osp
import types

import torch
import torch.nn.functional as F
from torch import nn

from mmdynconv.layers import FADE
from mmdynconv.layers.fade_upsample import RELEASE_NAMES, convert_release_state_dict
from mmdynconv.utils.release_import import import_file

FIXTURE = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tests', 'fixtures', 'fade_release_{}.pt')
CHANNELS = [4, 16, 64]
KERNELS = [3, 5]
SIZES = [(6, 6), (5, 7), (13, 9)]
# (release file, class, our options) per release class; the fixture's cases (channels, up_kernel, input size).
CLASSES = {('L2H', 'FADE'): dict(), ('L2H', 'SemiShiftUp'): dict(gating=False), ('L2H', 'FADELite'): dict(lite=True),
           ('H2L', 'FADE'): dict()}
RECORDED = [(('L2H', 'FADE'), 3, 5, (4, 5)), (('L2H', 'SemiShiftUp'), 3, 3, (4, 5)),
            (('L2H', 'FADELite'), 3, 5, (4, 5)), (('H2L', 'FADE'), 3, 5, (5, 5))]
RECORDED_EMBEDDING = 8


def carafe_stand_in(features, masks, kernel_size, group_size, scale_factor):
    """mmcv's ``carafe`` in plain PyTorch: out[b, c, Y, X] = Σ_{i,j} masks[b, g·k² + i·k + j, Y, X] ·
    features[b, c, ⌊Y/S⌋ + i − r, ⌊X/S⌋ + j − r] (zero outside), g the group of channel c, r = (k − 1)/2."""
    b, c, h, w = features.shape
    k, g, s = kernel_size, group_size, scale_factor
    cols = F.unfold(features, k, padding=(k - 1) // 2).view(b, g, c // g, k * k, h, w)
    cols = cols.repeat_interleave(s, 4).repeat_interleave(s, 5)
    return (cols * masks.view(b, g, 1, k * k, s * h, s * w)).sum(3).view(b, c, s * h, s * w)


def xavier_init_stand_in(module, gain=1, bias=0, distribution='normal'):
    """mmcv's ``xavier_init``."""
    init = nn.init.xavier_uniform_ if distribution == 'uniform' else nn.init.xavier_normal_
    init(module.weight, gain=gain)
    if getattr(module, 'bias', None) is not None:
        nn.init.constant_(module.bias, bias)


def import_release(path):
    """The release module at ``path``, imported with the mmcv stand-ins; ('L2H' or 'H2L', module)."""
    stubs = {name: types.ModuleType(name) for name in ('mmcv', 'mmcv.ops', 'mmcv.ops.carafe', 'mmcv.cnn')}
    stubs['mmcv.ops.carafe'].carafe = carafe_stand_in
    stubs['mmcv.cnn'].xavier_init = xavier_init_stand_in
    module = import_file(path, f'fade_release_{osp.basename(path)[:-3]}', stubs)
    return ('L2H' if hasattr(module, 'FADELite') else 'H2L'), module


def build_release(module, flavour, cls, channels, up_kernel, embedding=None):
    """The release's ``cls`` for ``channels`` encoder and decoder channels; ``embedding``: rebuild its
    ``SemiShift`` (FADE, SemiShiftUp) with that ``embedding_dim`` (the release's default is 64)."""
    layer = getattr(module, cls)(channels, up_kernel_size=up_kernel)
    if embedding is not None and cls != 'FADELite':
        if flavour == 'L2H':
            layer.ker_generator = module.SemiShift(channels, channels, out_channels=up_kernel ** 2,
                                                   embedding_dim=embedding)
        else:
            layer.kernel_generator = module.SemiShift(channels, channels, embedding_dim=embedding,
                                                      up_kernel_size=up_kernel)
    return layer


def perturb(layer, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def ours_for(release, channels, up_kernel, options):
    """Our FADE with the release layer's options and parameters (float64)."""
    state = convert_release_state_dict(release.state_dict())
    layer = FADE(channels, 2, up_kernel=up_kernel, compressed_channels=state['decoder_compressor.weight'].shape[0],
                 **options).double()
    layer.load_state_dict(state, strict=True)
    return layer


def step(layer, x, guidance, release_names=None):
    """Output and gradients (x, guidance, parameters by release name) for the output gradient linspace(-1, 1).
    ``release_names``: None for the release's layer; for ours, the release's parameter names to report ours by."""
    x, guidance = x.clone().requires_grad_(), guidance.clone().requires_grad_()
    out = layer(guidance, x) if release_names is None else layer(x, guidance)   # the release's order: (en, de)
    out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out))
    params = dict(layer.named_parameters())
    if release_names is not None:
        params = {name: params[RELEASE_NAMES[name]] for name in release_names}
    return out.detach(), dict(x=x.grad, guidance=guidance.grad, **{name: p.grad for name, p in params.items()})


def case_inputs(channels, size, seed, batch=2):
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    return (torch.randn(batch, channels, h, w, generator=gen, dtype=torch.float64),
            torch.randn(batch, channels, 2 * h, 2 * w, generator=gen, dtype=torch.float64))


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def compare(module, flavour, cls, channels, up_kernel, size, seed):
    torch.manual_seed(seed)
    release = build_release(module, flavour, cls, channels, up_kernel).double()
    perturb(release, seed)
    ours = ours_for(release, channels, up_kernel, CLASSES[flavour, cls])
    x, guidance = case_inputs(channels, size, seed + 1)
    out_r, grads_r = step(release, x, guidance)
    out_o, grads_o = step(ours, x, guidance, [name for name, _ in release.named_parameters()])
    if set(grads_r) != set(grads_o):
        raise RuntimeError(f'gradients do not match up: {sorted(set(grads_r) ^ set(grads_o))}')
    worst = dict(output=rel(out_o, out_r), grad_x=rel(grads_o['x'], grads_r['x']),
                 grad_guidance=rel(grads_o['guidance'], grads_r['guidance']))
    worst['param_grads'] = max(rel(grads_o[k], g) for k, g in grads_r.items() if k not in ('x', 'guidance'))
    return worst


def record(modules, commit):
    records = []
    for seed, ((flavour, cls), channels, up_kernel, size) in enumerate(RECORDED):
        if flavour not in modules:
            raise SystemExit(f'--record needs FADE_{flavour}.py too')
        torch.manual_seed(seed)
        release = build_release(modules[flavour], flavour, cls, channels, up_kernel, RECORDED_EMBEDDING).double()
        perturb(release, seed)
        x, guidance = case_inputs(channels, size, seed + 1)
        out, grads = step(release, x, guidance)
        records.append(dict(file=f'FADE_{flavour}.py', cls=cls, channels=channels, up_kernel=up_kernel,
                            options=CLASSES[flavour, cls], x=x, guidance=guidance, output=out,
                            state_dict={k: v.clone() for k, v in release.state_dict().items()},
                            grads={k: v.clone() for k, v in grads.items()}))   # clones: no larger storages
    path = FIXTURE.format(commit)
    torch.save(dict(release='github.com/poppinace/fade', commit=commit, records=records), path)
    print(f'recorded {len(records)} cases -> {path} ({osp.getsize(path) / 1024:.0f} KiB)')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('release', nargs='+', help="paths of the release's FADE_L2H.py and / or FADE_H2L.py")
    parser.add_argument('--record', metavar='COMMIT', help="write tests/fixtures/fade_release_COMMIT.pt (COMMIT: the "
                                                           "release's short commit hash)")
    args = parser.parse_args(argv)
    modules = dict(import_release(path) for path in args.release)
    torch.set_num_threads(1)
    overall, cases = {}, 0
    for (flavour, cls), c, k, size in itertools.product(CLASSES, CHANNELS, KERNELS, SIZES):
        if flavour not in modules or (flavour == 'H2L' and size[0] != size[1]):
            continue
        worst = compare(modules[flavour], flavour, cls, c, k, size, cases)
        cases += 1
        print(f'{flavour} {cls:11s} C={c:2d} k_up={k} HxW={size[0]}x{size[1]}: '
              + ', '.join(f'{key} {value:.1e}' for key, value in worst.items()), flush=True)
        overall = {key: max(overall.get(key, 0.0), value) for key, value in worst.items()}
    print(f'worst over {cases} cases (float64): ' + ', '.join(f'{key} {value:.1e}' for key, value in overall.items()))
    if args.record:
        record(modules, args.record)


if __name__ == '__main__':
    main()
