"""Measure how far our SAPA is from the authors' released modules, in float64, and record a test fixture.

The release (github.com/poppinace/sapa) is not part of this repository: pass the path of a checkout. Its modules
``SAPA.py`` (``SAPA``, the bilinear SAPA-B) and ``SAPAExp.py`` (``SAPAExp``, the experiment module: query modes
``'encoder_only'``, ``'gate'`` (SAPA-G), ``'cat'``, and ``v_embed``) import ``sim`` and ``atn`` from the release's
``sapa`` package, whose only implementation is a CUDA extension, and ``trunc_normal_`` from timm. The release also
ships the pure-PyTorch versions of both ops it checks its CUDA kernels against, ``sim_`` and ``atn_`` in
``sapa/sapa/forward_check.py`` (unfold and einsum; out-of-map taps are zero-padded: similarity 0, value 0, as in the
kernels of ``sapa/sapa/src/cuda``). While the modules are imported, ``sapa.sim`` / ``sapa.atn`` are those two
functions and ``timm.models.layers.trunc_normal_`` is torch's ``nn.init.trunc_normal_`` (same bounds); nothing else
is changed. The gradients are autograd's through ``sim_`` and ``atn_``.

For every case the release's module is built, every parameter moved off its initialisation (seeded), its state dict
converted (:func:`mmdynconv.layers.sapa_upsample.convert_release_state_dict`) and loaded into our ``SAPA`` with the
matching options; both run the same encoder feature (our guidance) and decoder feature (our input) and the output
gradient ``linspace(-1, 1)``. Printed per case: the largest relative difference max|ours − release| / max|release|
of the output, the gradients of both inputs and every parameter gradient; then the worst of all cases.

    python tools/sapa_release_parity.py /path/to/sapa
    python tools/sapa_release_parity.py /path/to/sapa --record 5530ef8   # writes the test fixture

``--record COMMIT`` writes ``tests/fixtures/sapa_release_<COMMIT>.pt`` (COMMIT: the release's short commit hash): a
few small cases (embedding_dim 8 instead of 64, to keep the file small), each with the release-layout state dict,
the inputs, the release's output and its input and parameter gradients (float64). ``tests/layers/test_sapa.py`` loads
them into our layer and compares.
"""
import argparse
import itertools
import os.path as osp
import types

import torch
from torch import nn

from mmdynconv.layers import SAPA
from mmdynconv.layers.sapa_upsample import convert_release_state_dict, release_name
from mmdynconv.utils.release_import import import_file

FIXTURE = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tests', 'fixtures', 'sapa_release_{}.pt')
# name -> (release file, class, its keyword arguments, our options)
VARIANTS = {
    'SAPA': ('SAPA.py', 'SAPA', dict(), dict()),
    'SAPAExp-encoder_only': ('SAPAExp.py', 'SAPAExp', dict(q_mode='encoder_only'), dict()),
    'SAPAExp-gate': ('SAPAExp.py', 'SAPAExp', dict(q_mode='gate'), dict(query_mode='gated')),
    'SAPAExp-cat': ('SAPAExp.py', 'SAPAExp', dict(q_mode='cat'), dict(query_mode='concat')),
    'SAPAExp-v_embed': ('SAPAExp.py', 'SAPAExp', dict(v_embed=True), dict(value_embed=True)),
    'SAPA-no-bias': ('SAPA.py', 'SAPA', dict(qkv_bias=False), dict(qkv_bias=False)),
}
# (decoder channels C, encoder channels C_g), up_kernel, scale factor, embedding_dim, decoder size
GEOMETRIES = [((4, 4), 5, 2, 64, (6, 6)), ((16, 6), 3, 2, 8, (5, 7)), ((8, 8), 5, 2, 16, (3, 9)),
              ((6, 6), 3, 3, 8, (4, 5)), ((4, 4), 1, 2, 8, (2, 3))]
RECORDED = [('SAPA', (4, 3), 5, 2, (4, 5)), ('SAPAExp-gate', (4, 4), 3, 2, (3, 4)),
            ('SAPAExp-cat', (4, 3), 3, 2, (3, 4)), ('SAPAExp-v_embed', (4, 4), 3, 3, (2, 3))]
RECORDED_EMBEDDING = 8


def import_release(root):
    """{file name: module} of the release's SAPA.py and SAPAExp.py, imported with forward_check.py's pure-PyTorch
    ``sim_`` / ``atn_`` as ``sapa.sim`` / ``sapa.atn`` and torch's ``trunc_normal_`` as timm's."""
    cuda_only = types.ModuleType('sapa_func')   # forward_check.py imports the CUDA ops; it uses its own sim_, atn_
    cuda_only.sim = cuda_only.atn = None
    check = import_file(osp.join(root, 'sapa', 'sapa', 'forward_check.py'), 'sapa_release_forward_check',
                        {'sapa_func': cuda_only})
    package = types.ModuleType('sapa')
    package.sim, package.atn = check.sim_, check.atn_
    stubs = {name: types.ModuleType(name) for name in ('timm', 'timm.models', 'timm.models.layers')}
    stubs['timm.models.layers'].trunc_normal_ = nn.init.trunc_normal_
    stubs['sapa'] = package
    return {name: import_file(osp.join(root, name), f'sapa_release_{name[:-3]}', stubs)
            for name in ('SAPA.py', 'SAPAExp.py')}


def build_release(modules, variant, channels, up_kernel, scale, embedding):
    file, cls, kwargs, _ = VARIANTS[variant]
    c, c_g = channels
    return getattr(modules[file], cls)(c_g, c, up_factor=scale, up_kernel_size=up_kernel, embedding_dim=embedding,
                                       **kwargs)


def perturb(layer, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def ours_for(release, variant, channels, up_kernel, scale):
    """Our SAPA with the release layer's options and parameters (float64)."""
    c, c_g = channels
    layer = SAPA(c, scale, up_kernel=up_kernel, embedding_dim=release.embedding_dim, guidance_channels=c_g,
                 **VARIANTS[variant][3]).double()
    layer.load_state_dict(convert_release_state_dict(release.state_dict()), strict=True)
    return layer


def step(layer, x, guidance, release_names=None):
    """Output and gradients (x, guidance, parameters by release name) for the output gradient linspace(-1, 1).
    ``release_names``: None for the release's layer; for ours, the release's parameter names to report ours by."""
    x, guidance = x.clone().requires_grad_(), guidance.clone().requires_grad_()
    out = layer(guidance, x) if release_names is None else layer(x, guidance)   # the release's order: (y, x)
    out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out))
    params = dict(layer.named_parameters())
    if release_names is not None:
        params = {name: params[release_name(name)] for name in release_names}
    return out.detach(), dict(x=x.grad, guidance=guidance.grad, **{name: p.grad for name, p in params.items()})


def case_inputs(channels, size, scale, seed, batch=2):
    gen = torch.Generator().manual_seed(seed)
    (c, c_g), (h, w) = channels, size
    return (torch.randn(batch, c, h, w, generator=gen, dtype=torch.float64),
            torch.randn(batch, c_g, scale * h, scale * w, generator=gen, dtype=torch.float64))


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def compare(modules, variant, channels, up_kernel, scale, embedding, size, seed):
    torch.manual_seed(seed)
    release = build_release(modules, variant, channels, up_kernel, scale, embedding).double()
    perturb(release, seed)
    ours = ours_for(release, variant, channels, up_kernel, scale)
    x, guidance = case_inputs(channels, size, scale, seed + 1)
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
    for seed, (variant, channels, up_kernel, scale, size) in enumerate(RECORDED):
        torch.manual_seed(seed)
        release = build_release(modules, variant, channels, up_kernel, scale, RECORDED_EMBEDDING).double()
        perturb(release, seed)
        x, guidance = case_inputs(channels, size, scale, seed + 1)
        out, grads = step(release, x, guidance)
        file, cls, kwargs, options = VARIANTS[variant]
        records.append(dict(variant=variant, file=file, cls=cls, release_kwargs=kwargs, options=options,
                            channels=channels[0], guidance_channels=channels[1], up_kernel=up_kernel,
                            scale_factor=scale, embedding_dim=RECORDED_EMBEDDING, x=x, guidance=guidance, output=out,
                            state_dict={k: v.clone() for k, v in release.state_dict().items()},
                            grads={k: v.clone() for k, v in grads.items()}))   # clones: no larger storages
    path = FIXTURE.format(commit)
    torch.save(dict(release='github.com/poppinace/sapa', commit=commit, records=records), path)
    print(f'recorded {len(records)} cases -> {path} ({osp.getsize(path) / 1024:.0f} KiB)')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('release', help='path of a checkout of github.com/poppinace/sapa')
    parser.add_argument('--record', metavar='COMMIT', help="write tests/fixtures/sapa_release_COMMIT.pt (COMMIT: the "
                                                           "release's short commit hash)")
    args = parser.parse_args(argv)
    modules = import_release(args.release)
    torch.set_num_threads(1)
    overall, cases = {}, 0
    for variant, (channels, k, s, e, size) in itertools.product(VARIANTS, GEOMETRIES):
        worst = compare(modules, variant, channels, k, s, e, size, cases)
        cases += 1
        numbers = ', '.join(f'{key} {value:.1e}' for key, value in worst.items())
        print(f'{variant:20s} C={channels[0]:2d} C_g={channels[1]:2d} k_up={k} S={s} D={e:2d} '
              f'HxW={size[0]}x{size[1]}: {numbers}', flush=True)
        overall = {key: max(overall.get(key, 0.0), value) for key, value in worst.items()}
    print(f'worst over {cases} cases (float64): ' + ', '.join(f'{key} {value:.1e}' for key, value in overall.items()))
    if args.record:
        record(modules, args.record)


if __name__ == '__main__':
    main()
