"""Convert a whole ResNet checkpoint into an FDConv-ResNet backbone checkpoint, and report what happened.

    python tools/convert_fdconv_checkpoint.py SRC DST [--layout auto|torchvision|mmpretrain|openmmlab]
        [--kernel-num 64] [--dynamic-min-channels 16] [--dynamic-kernel-sizes 1 3] [--allow-pickle]

A checkpoint of the authors' FDConv release (``--layout release``, detected from its ``dft_weight`` keys; a
detector or a backbone) is converted layer by layer into our parameter names instead, every prefix kept, so that
the result loads into the matching mmdynconv model (FDConv with ``band_order='release'``, the default; loading the
release checkpoint directly converts it the same way on the fly).

Source layouts: ``torchvision`` (``conv1``/``bn1``/``layerN``/``fc``; also mmdet's ``ResNet`` layout),
``openmmlab`` (mmdet/mmseg deep-stem ``stem.0``…, e.g. ``open-mmlab://resnet50_v1c``) and ``mmpretrain``
(``backbone.``-prefixed, deep stem as ``stem.j.conv``/``stem.j.bn``, ``head.*``). Every bottleneck conv1/conv2/conv3
weight that the FDConv fallback rule makes dynamic becomes a ``spectrum``; everything else of the backbone is copied;
classifier heads are skipped. The result (``{'state_dict': …}``, backbone keys without prefix) loads into
``FDConvResNet`` / ``FDConvResNetV1c`` via ``init_cfg=dict(type='Pretrained', checkpoint=DST)``.

The target backbone is built (mmdet's if installed, else mmseg's for deep-stem checkpoints) to report its keys the
checkpoint does not provide: FDConv modulation parameters are expected to be missing (they start at identity); any
other missing or unexpected key is a problem and makes the exit status 1. (An ordinary ResNet checkpoint can also be
given to those backbones directly: FDConv converts conv weights while loading. This tool does it once, offline, and
checks the result.)
"""
import argparse
import re
import sys
from importlib.util import find_spec

import torch

from mmdynconv.layers.fdconv import is_dynamic
from mmdynconv.layers.fdconv_release import RELEASE_MARKER, convert_release_checkpoint
from mmdynconv.ops.fdconv_spectrum import weight_to_spectrum

DEPTHS = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}
BLOCK_CONV = re.compile(r'^layer\d+\.\d+\.conv[123]\.weight$')
HEAD_PREFIXES = ('fc.', 'head.', 'neck.', 'data_preprocessor.')


def load_state_dict(path, allow_pickle):
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # noqa: BLE001  (any unpickling failure)
        if not allow_pickle:
            raise SystemExit(f'{path}: cannot be read with torch.load(weights_only=True) ({err}). If you trust the '
                             f'file, pass --allow-pickle.')
        checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise SystemExit(f'{path}: no state dict found')
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in checkpoint.items()}


def detect_layout(keys):
    if any(k.endswith(RELEASE_MARKER) for k in keys):
        return 'release'
    if any(k.startswith('backbone.') for k in keys):
        return 'mmpretrain'
    if any(k.startswith('stem.') for k in keys):
        return 'openmmlab'
    if 'conv1.weight' in keys:
        return 'torchvision'
    raise SystemExit('cannot recognise the checkpoint layout (no conv1.weight, stem.* or backbone.* keys); '
                     'pass --layout')


def to_backbone_keys(state, layout):
    """Return (backbone state dict in mmdet/mmseg key layout, skipped source keys)."""
    out, skipped = {}, []
    for key, value in state.items():
        name = key
        if layout == 'mmpretrain':
            if not name.startswith('backbone.'):
                skipped.append(key)
                continue
            name = name[len('backbone.'):]
            match = re.match(r'^stem\.(\d+)\.(conv|bn)\.(.+)$', name)
            if match:  # ConvModule deep stem -> nn.Sequential(conv, bn, relu) ×3
                index = 3 * int(match.group(1)) + (0 if match.group(2) == 'conv' else 1)
                name = f'stem.{index}.{match.group(3)}'
        if name.startswith(HEAD_PREFIXES) or not isinstance(value, torch.Tensor):
            skipped.append(key)
            continue
        out[name] = value
    return out, skipped


def convert(state, min_channels, kernel_sizes):
    """Turn dynamic bottleneck conv weights into spectra; return (state, converted keys, plain-kept conv keys)."""
    out, converted, kept = {}, [], []
    for key, value in state.items():
        if BLOCK_CONV.match(key) and value.dim() == 4:
            co, ci, k, _ = value.shape
            if is_dynamic(ci, co, k, min_channels, kernel_sizes):
                out[key[:-len('weight')] + 'spectrum'] = weight_to_spectrum(value)
                converted.append(key)
                continue
            kept.append(key)
        out[key] = value
    return out, converted, kept


def infer_architecture(state):
    blocks = []
    for stage in range(1, 5):
        ids = {int(m.group(1)) for k in state for m in [re.match(rf'^layer{stage}\.(\d+)\.', k)] if m}
        blocks.append(len(ids))
    if not any(k.endswith('conv3.weight') or k.endswith('conv3.spectrum') for k in state):
        raise SystemExit('no conv3 in the blocks: only Bottleneck ResNets (depth 50/101/152) are supported')
    depth = DEPTHS.get(tuple(blocks))
    if depth is None:
        raise SystemExit(f'unsupported stage depths {blocks}; expected one of {list(DEPTHS)}')
    first = state.get('layer1.0.conv1.weight', state.get('layer1.0.conv1.spectrum'))
    deep_stem = 'stem.0.weight' in state
    stem = state['stem.6.weight'].shape[0] if deep_stem else state['conv1.weight'].shape[0]
    base = first.shape[0] if first.dim() == 4 else state['layer1.0.bn1.weight'].shape[0]
    return dict(depth=depth, base_channels=base, stem_channels=stem, deep_stem=deep_stem)


def build_target(arch, fdconv_cfg):
    """The FDConv backbone matching the checkpoint, or None when neither mmdet nor (for deep stems) mmseg exists."""
    from mmengine.registry import MODELS

    import mmdynconv  # noqa: F401  (registers the backbones)
    kwargs = dict(depth=arch['depth'], base_channels=arch['base_channels'], stem_channels=arch['stem_channels'],
                  fdconv_cfg=fdconv_cfg, init_cfg=None)
    if find_spec('mmdet') is not None:
        return MODELS.build(dict(type='FDConvResNet', deep_stem=arch['deep_stem'], **kwargs))
    if find_spec('mmseg') is not None and arch['deep_stem']:
        return MODELS.build(dict(type='FDConvResNetV1c', **kwargs))
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='ResNet checkpoint (torchvision, openmmlab or mmpretrain layout) or an FDConv '
                        'release checkpoint')
    parser.add_argument('dst', help='output checkpoint for FDConvResNet / FDConvResNetV1c')
    parser.add_argument('--layout', choices=['auto', 'torchvision', 'openmmlab', 'mmpretrain', 'release'],
                        default='auto')
    parser.add_argument('--kernel-num', type=int, default=64, help='FDConv kernel_num of the target (default 64)')
    parser.add_argument('--dynamic-min-channels', type=int, default=16,
                        help='FDConv fallback rule: dynamic only if min(Ci, Co) exceeds this (default 16)')
    parser.add_argument('--dynamic-kernel-sizes', type=int, nargs='+', default=[1, 3],
                        help='FDConv fallback rule: kernel sizes that become dynamic (default 1 3)')
    parser.add_argument('--allow-pickle', action='store_true',
                        help='fall back to torch.load(weights_only=False) for checkpoints holding Python objects')
    args = parser.parse_args(argv)

    source = load_state_dict(args.src, args.allow_pickle)
    layout = detect_layout(source) if args.layout == 'auto' else args.layout
    if layout == 'release':
        return convert_release(source, args.src, args.dst)
    backbone, skipped = to_backbone_keys(source, layout)
    converted_state, converted, kept = convert(backbone, args.dynamic_min_channels, tuple(args.dynamic_kernel_sizes))
    copied = [k for k in converted_state if not k.endswith('.spectrum')]
    print(f'source layout: {layout}; {len(source)} tensors')
    print(f'converted: {len(converted)} conv weights -> FDConv spectra')
    print(f'copied:    {len(copied)} tensors ({len(kept)} bottleneck convs kept plain by the fallback rule)')
    print(f'skipped:   {len(skipped)} source keys not in the backbone' + (f': {_short(skipped)}' if skipped else ''))

    fdconv_cfg = dict(type='FDConv', kernel_num=args.kernel_num, dynamic_min_channels=args.dynamic_min_channels,
                      dynamic_kernel_sizes=tuple(args.dynamic_kernel_sizes))
    arch = infer_architecture(converted_state)
    target = build_target(arch, fdconv_cfg)
    problems = 0
    if target is None:
        print('missing:   not checked (needs mmdet, or mmseg for deep-stem checkpoints)')
    else:
        result = target.load_state_dict(converted_state, strict=False)
        new = [k for k in result.missing_keys if re.search(r'\.(ksm_global|ksm_local|fbm)\.', k)]
        other = [k for k in result.missing_keys if k not in new]
        print(f'missing:   {len(new)} FDConv modulation entries (new; identity initialisation, expected)')
        print(f'           {len(other)} other backbone keys' + (f': {_short(other)}' if other else ''))
        print(f'unexpected: {len(result.unexpected_keys)}' +
              (f': {_short(result.unexpected_keys)}' if result.unexpected_keys else ''))
        problems = len(other) + len(result.unexpected_keys)
    meta = dict(source=args.src, layout=layout, fdconv_cfg=fdconv_cfg, architecture=arch, converted=len(converted))
    torch.save(dict(state_dict=converted_state, meta=meta), args.dst)
    print(f'wrote {args.dst} ({arch["depth"]} layers, base width {arch["base_channels"]})')
    return 1 if problems else 0


def convert_release(source, src, dst):
    """The authors' checkpoint -> ours, every FDConv layer renamed in place; exit status 1 on any problem."""
    state, prefixes, errors = convert_release_checkpoint(source)
    print(f'source layout: release; {len(source)} tensors')
    print(f'converted: {len(prefixes)} release FDConv layers (band_order=release)')
    for error in errors:
        print(f'problem:   {error}')
    if not prefixes:
        print('problem:   no dft_weight key found')
    meta = dict(source=src, layout='release', band_order='release', converted=len(prefixes))
    torch.save(dict(state_dict=state, meta=meta), dst)
    print(f'wrote {dst}')
    return 1 if errors or not prefixes else 0


def _short(keys, limit=6):
    return ', '.join(keys[:limit]) + (f', … (+{len(keys) - limit})' if len(keys) > limit else '')


if __name__ == '__main__':
    sys.exit(main())
