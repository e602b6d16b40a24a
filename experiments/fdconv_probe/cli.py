"""Measure why a from-scratch FDConv-ResNet detector trails the plain one (see docs/comparison.md).

    python tools/probe_fdconv_training.py --data work_dirs/compare/data/eval/coco/ --steps 30 [--lr-mult auto]

Prints, as markdown: the Adam step gain of FDConv's spectrum parameterisation for every layer shape of the backbone;
per-stage activation / output-gradient std ratios FDConv / plain at the first step (same initial kernels); the
per-stage relative kernel change after ``--steps`` AdamW steps on the same batches; the loss curves. ``--lr-mult``
adds a diagnostic third model whose spectrum gets that learning-rate multiplier (``auto``: 1 / mean step gain).
Logic: :mod:`.probe`.
"""
import argparse
import os.path as osp
import statistics

import torch

from .probe import gain_table, run_probe, spectrum_step_gain

CONFIGS = ('configs/compare/faster-rcnn_tiny-r50_fpn_shapes64.py',
           'configs/compare/faster-rcnn_tiny-r50-fdconv_fpn_shapes64.py')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data', help='a generated COCO folder (…/coco/)')
    p.add_argument('--trace', metavar='CONFIG', help='instead: train CONFIG (e.g. a comparison run\'s config.py) and '
                   'print per-iteration loss, gradient norm, KSM kernel gain and activation maxima per stage')
    p.add_argument('--trace-dir', default='work_dirs/fdconv_trace', help='work dir of --trace')
    p.add_argument('--trace-stop', type=int, default=None, help='stop --trace after this many iterations')
    p.add_argument('--trace-ksm-norm-train', action='store_true',
                   help='--trace with every KSM BatchNorm kept in training mode (see FDConvTraceHook)')
    p.add_argument('--plain-config', default=CONFIGS[0])
    p.add_argument('--fdconv-config', default=CONFIGS[1])
    p.add_argument('--steps', type=int, default=30, help='AdamW steps (>= 1)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--lr-mult', default=None, help="diagnostic spectrum lr multiplier: a number > 0 or 'auto'")
    args = p.parse_args(argv)
    if args.trace:
        from .probe import trace_run, trace_table
        print(trace_table(trace_run(args.trace, args.trace_dir, args.trace_stop, args.trace_ksm_norm_train)))
        return 0
    if args.data is None:
        p.error('--data is required (or --trace CONFIG)')
    if args.steps < 1:
        p.error(f'--steps must be >= 1, got {args.steps}')
    if not osp.isfile(osp.join(args.data, 'annotations', 'instances_train2017.json')):
        p.error(f'--data must be a generated COCO folder with annotations/instances_train2017.json, got {args.data!r}')
    torch.set_num_threads(1)
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    import mmdynconv  # noqa: F401
    init_default_scope('mmdet')
    backbone = MODELS.build(Config.fromfile(args.fdconv_config).model.backbone)
    print('**FDConv spectrum parameterisation, per layer shape of the backbone**\n')
    print(gain_table(backbone))
    lr_mult = args.lr_mult
    if lr_mult == 'auto':
        from .probe import bottleneck_convs
        gains = [spectrum_step_gain(c.in_channels, c.out_channels, c.kernel_size)['gain']
                 for _, c in bottleneck_convs(backbone) if c.dynamic]
        lr_mult = 1 / statistics.fmean(gains)
    elif lr_mult is not None:
        try:
            lr_mult = float(lr_mult)
            assert lr_mult > 0
        except (ValueError, AssertionError):
            p.error(f"--lr-mult must be a number > 0 or 'auto', got {args.lr_mult!r}")
    print(run_probe(args.plain_config, args.fdconv_config, args.data, args.steps, args.seed, lr_mult))
