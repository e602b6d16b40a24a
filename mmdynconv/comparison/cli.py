"""Command line of ``tools/compare_layers.py``: compare the dynamic layers on your own mmdet / mmseg config, or
(preset demo, the default) on the demo data.

    python tools/compare_layers.py --config MY_CONFIG.py --out DIR [--variants FDConv,DDF-Up,...] [--seeds 0,1,2]
        [--variant-config NAME=PATH ...] [--cfg-options k=v ...] [--metric NAME] [--launcher pytorch --gpus N]
        [--jobs J]

With ``--config``: one config per variant, derived by the variant's one-change rule (mmdynconv/models/variants.py;
``--variants`` defaults to every variant that applies, a named variant that does not apply is refused before anything
runs) or, for ``--variant-config NAME=PATH``, the model of the config PATH, each trained with every seed; everything
else identical. Writes ``results.csv``, ``table.md`` (metric and cost
ratios to the plain model, costs measured in this invocation on this device) and ``cost.png`` into ``--out``.
Finished runs are skipped, interrupted ones resume from their last checkpoint. See docs/comparison.md.

Preset demo (no ``--config``, or ``--preset demo``):

    python tools/compare_layers.py --out work_dirs/compare            # the full comparison (resumable)
    python tools/compare_layers.py --out /tmp/cmp --quick             # pipeline check: one seed, a few iterations
    python tools/compare_layers.py --out work_dirs/compare --report   # tables from the runs finished so far

Pretrains a plain and a DDF-ResNet backbone on a different generated task, then fine-tunes every variant (plain,
DDF-Up neck, DDF-ResNet, FDConv-ResNet, and the baselines whose configs exist under configs/compare) with the same
schedule and seeds, from the pretrained backbone and from scratch. Writes ``results.csv`` (one row per run),
``table.md`` (mean ± std over seeds) and ``comparison.png`` into ``--out``. A finished run (its ``result.json``) is
skipped, so an interrupted comparison continues where it stopped. The preset is experiment code run from a clone
(experiments/demo_comparison/, not installed); its training runs go through the same config runner
(mmdynconv/comparison/config_runner.py; the preset's layout under --out: docs/comparison.md).
"""
import argparse
import os.path as osp
import re
import sys

from .config_runner import ConfigRefused, NothingToReport, compare_config

__all__ = ['DEMO_INITS', 'PLACEMENT_RULES', 'DictAction', 'main_config', 'parse_args', 'variants_table', 'main']

DEMO_INITS = ('pretrained', 'scratch')  # the demo preset's initialisations (experiments/demo_comparison/cells.py)


class DictAction(argparse.Action):
    """``k=v`` pairs parsed like mmengine's DictAction (imported lazily: the demo preset does not need mmengine)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from mmengine.config import DictAction as MMDictAction
        MMDictAction(self.option_strings, self.dest)(parser, namespace, values, option_string)


def main_config(args):
    """The comparison on ``--config`` (see the module docstring)."""
    launch = dict(launcher=args.launcher, gpus=args.gpus, nnodes=args.nnodes, node_rank=args.node_rank,
                  master_addr=args.master_addr, master_port=args.master_port)
    try:
        summary = compare_config(args.config, args.out, args.variants.split(',') if args.variants else None,
                                 args.variant_config, args.seeds, args.cfg_options, args.metric, args.jobs,
                                 args.threads, launch, args.cost_iters, args.dry_run, args.report)
    except ConfigRefused as e:
        print(f'compare_layers.py: error: {e}', file=sys.stderr)
        return 2
    except NothingToReport as e:
        print(e)
        return 1
    return 1 if summary and summary['missing'] else 0


def _seeds(text):
    try:
        seeds = tuple(int(s) for s in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected comma-separated seeds >= 0, got {text!r}')
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f'expected distinct comma-separated seeds >= 0, got {text!r}')
    return seeds


def _variant_config(text):
    name, sep, path = text.partition('=')
    if not sep or not path or not re.fullmatch(r'[A-Za-z0-9][A-Za-z0-9._+-]*', name):
        raise argparse.ArgumentTypeError(f'expected NAME=PATH, NAME of letters, digits and ._+- (a folder name), '
                                         f'got {text!r}')
    return name, path


DEMO_ONLY = ('quick', 'tasks', 'det_seeds', 'seg_seeds')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='work_dirs/compare', help='output folder (default: work_dirs/compare)')
    p.add_argument('--config', default=None, help='an mmdet / mmseg config to compare the layers on')
    p.add_argument('--preset', choices=['demo'], default=None, help='the demo comparison (default without --config)')
    p.add_argument('--seeds', type=_seeds, default=(0,), help='--config: seeds of every variant (default 0)')
    p.add_argument('--variant-config', type=_variant_config, action='append', default=None, metavar='NAME=PATH',
                   help='--config: also compare the variant NAME whose model is the model of the config PATH '
                   '(repeatable; --variants can name it)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                   help='--config: override config entries of every variant, e.g. train_cfg.max_iters=100')
    p.add_argument('--metric', default=None, help='--config: primary metric (default coco/bbox_mAP for mmdet, mIoU '
                   'for mmseg)')
    p.add_argument('--launcher', choices=['none', 'pytorch'], default='none',
                   help='--config: pytorch runs every training under torch.distributed.run (mmengine launcher)')
    p.add_argument('--gpus', type=int, default=1, help='--config --launcher pytorch: processes per run and node')
    p.add_argument('--nnodes', type=int, default=1, help='--launcher pytorch: nodes (run this command on each)')
    p.add_argument('--node-rank', type=int, default=0, help='--launcher pytorch: this node\'s rank')
    p.add_argument('--master-addr', default='127.0.0.1', help='--launcher pytorch: address of node 0')
    p.add_argument('--master-port', type=int, default=29500, help='--launcher pytorch: port (+ job slot)')
    p.add_argument('--cost-iters', type=int, default=10, help='--config: timed iterations of each cost measurement')
    p.add_argument('--quick', action='store_true', help='tiny data, one seed, a few iterations (checks the pipeline)')
    p.add_argument('--tasks', default=None, help='comma-separated subset of det,seg (default: both)')
    p.add_argument('--variants', default=None, help='comma-separated variant names (plain is always included)')
    p.add_argument('--inits', default=None, help=f'comma-separated subset of {",".join(DEMO_INITS)}')
    p.add_argument('--det-seeds', type=_seeds, default=None, help='detector seeds (default: the protocol\'s)')
    p.add_argument('--seg-seeds', type=_seeds, default=None, help='segmenter seeds (default: the protocol\'s)')
    p.add_argument('--jobs', type=int, default=1, help='training runs at a time (default 1)')
    p.add_argument('--threads', type=int, default=1, help='OMP_NUM_THREADS of each run (default 1)')
    p.add_argument('--dry-run', action='store_true', help='list the runs (done / to do) and exit')
    p.add_argument('--list-variants', action='store_true', help='print the declared variants (a markdown table) and '
                   'exit')
    p.add_argument('--report', action='store_true', help='only write the tables from the finished runs')
    args = p.parse_args(argv)
    if args.config is not None:
        if args.preset is not None:
            p.error(f'--preset {args.preset} and --config exclude each other: pass one')
        given = [f'--{k.replace("_", "-")}' for k in DEMO_ONLY + ('inits',) if getattr(args, k) not in (None, False)]
        if given:
            p.error(f'{", ".join(given)}: options of the demo preset, not of --config (use --seeds, --cfg-options)')
        if args.gpus < 1 or args.nnodes < 1 or not 0 <= args.node_rank < args.nnodes or args.cost_iters < 1:
            p.error(f'--gpus, --nnodes, --cost-iters must be >= 1 and 0 <= --node-rank < --nnodes, got --gpus '
                    f'{args.gpus}, --nnodes {args.nnodes}, --node-rank {args.node_rank}, '
                    f'--cost-iters {args.cost_iters}')
        if args.launcher == 'none' and (args.gpus != 1 or args.nnodes != 1):
            p.error(f'--gpus {args.gpus} / --nnodes {args.nnodes} need --launcher pytorch')
        names = [n for n, _ in args.variant_config or []]
        if len(set(names)) != len(names):
            p.error(f'--variant-config: each NAME once, got {", ".join(names)}')
        args.variant_config = dict(args.variant_config or [])
    else:
        bad = [o for o, v in (('--seeds', args.seeds != (0,)), ('--variant-config', args.variant_config),
                              ('--cfg-options', args.cfg_options),
                              ('--metric', args.metric), ('--launcher', args.launcher != 'none')) if v]
        if bad:
            p.error(f'{", ".join(bad)}: options of --config, not of the demo preset (pass --config CONFIG)')
    args.inits = args.inits or ','.join(DEMO_INITS)
    if args.tasks is not None:
        args.tasks = tuple(args.tasks.split(','))
        if not args.tasks or not set(args.tasks) <= {'det', 'seg'}:
            p.error(f'--tasks must be a comma-separated subset of det,seg, got {",".join(args.tasks)!r}')
    args.inits = tuple(args.inits.split(','))
    if not set(args.inits) <= set(DEMO_INITS):
        p.error(f'--inits must be a comma-separated subset of {",".join(DEMO_INITS)}, got {",".join(args.inits)!r}')
    if args.jobs < 1 or args.threads < 1:
        p.error(f'--jobs and --threads must be >= 1, got {args.jobs} and {args.threads}')
    if osp.isfile(args.out):
        p.error(f'--out must be a folder, but {args.out!r} is a file')
    return args


PLACEMENT_RULES = dict(
    block_convs='conv1-3 of every Bottleneck, conv1-2 of every BasicBlock (stem and shortcuts plain), in the '
                'backbone type shown; needs mmdet `ResNet` / `ResNetV1d` or mmseg `ResNetV1c` (depth 18-152, no '
                '`dcn` / `plugins`)',
    dcn_slot='conv2 of every Bottleneck, through the ResNet\'s `dcn` slot; needs a Bottleneck ResNet (depth 50-152)',
    fpn_upsampler='the FPN\'s top-down x2 upsampling, by `UpsamplerFPN` (guided upsamplers get the finer lateral); '
                  'needs `model.neck` an mmdet / mmseg `FPN`, or, in mmseg without a neck, a `UPerHead` (its top-down '
                  'path, by `UpsamplerUPerHead`) or `SegformerHead` decode head (its resizes to the finest level, by '
                  '`UpsamplerSegformerHead`)')


def variants_table():
    """Markdown table of the declared variants (``--list-variants``), from the layer declarations."""
    from ..layers.declarations import DECLARATIONS
    lines = ['| variant | part | where | layer config | change |', '|---|---|---|---|---|']
    for d in DECLARATIONS.values():
        v = d.variant
        if v is None:
            continue
        cfg = ', '.join(f'{k}={val!r}' for k, val in v.cfg.items())
        backbones = ' / '.join(dict.fromkeys(v.backbones.values())) if v.placement == 'block_convs' else ''
        where = f'`{v.placement}`' + (f' ({backbones})' if backbones else '')
        part = 'neck' if v.placement == 'fpn_upsampler' else 'backbone'
        hooks = ''.join(f'; adds `{h["type"]}(' + ', '.join(f'{k}={val!r}' for k, val in h.items() if k != 'type')
                        + ')`' for h in v.hooks)
        lines.append(f'| {v.name} | {part} | {where} | `dict({cfg})` | {v.description}{hooks} |')
    rules = '\n'.join(f'- `{k}`: {text}' for k, text in PLACEMENT_RULES.items())
    return '\n'.join(lines) + '\n\nPlacements:\n\n' + rules + '\n'


def main(argv=None):
    args = parse_args(argv)
    if args.list_variants:
        print(variants_table(), end='')
        return 0
    if args.config is not None:
        return main_config(args)
    try:
        from experiments.demo_comparison.protocol import PROTOCOLS
        from experiments.demo_comparison.runner import run_demo
    except ImportError as e:
        print(f'compare_layers.py: error: the demo preset is experiment code that runs from a clone of the repository '
              f'(experiments/ is not installed: {e}); compare the layers on a config with --config CONFIG',
              file=sys.stderr)
        return 2
    protocol = PROTOCOLS['quick' if args.quick else 'full'].with_seeds(args.det_seeds, args.seg_seeds, args.tasks)
    try:
        run_demo(protocol, args.out, args.variants.split(',') if args.variants else None, args.inits, args.jobs,
                 args.threads, args.dry_run, args.report)
    except NothingToReport as e:
        print(e)
        return 1
    return 0
