"""Count parameters and FLOPs of a model from a config, mmdynconv's ops included (logic: mmdynconv.utils.complexity;
the docs table: experiments/docs_tables/complexity_table.py).

mmengine's ``FlopAnalyzer`` (JIT trace; one multiply-accumulate = one FLOP) with handles for DDF, DDF-Up, FDConv
(kernel assembly with its inverse FFT, KSM, FBM, the per-sample conv); conventions in the module docstring.

    python tools/get_flops.py CONFIG [--shape H W] [--part backbone]   # one model, random input
    python tools/get_flops.py --compare [--docs PAGE]    # ResNet-50 / Faster R-CNN, every variant -> docs/complexity.md
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone without installing

from mmengine.config import Config  # noqa: E402

from mmdynconv.utils.complexity import model_complexity  # noqa: E402

DOCS = osp.join('docs', 'complexity.md')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', nargs='?', help='config file')
    p.add_argument('--shape', type=int, nargs=2, default=[800, 1216], metavar=('H', 'W'), help='input size')
    p.add_argument('--part', help="count only this submodule, e.g. 'backbone' (input: the image)")
    p.add_argument('--compare', action='store_true', help='print the ResNet-50 / Faster R-CNN comparison table')
    p.add_argument('--docs', default=DOCS, help=f'page --compare writes (default {DOCS}; "" for none)')
    args = p.parse_args(argv)
    if args.compare:
        from experiments.docs_tables.complexity_table import comparison_table, complexity_page
        table = comparison_table()
        print(table)
        if args.docs:
            with open(args.docs, 'w') as f:
                f.write(complexity_page(table, 'python tools/get_flops.py ' + ' '.join(sys.argv[1:] if argv is None
                                                                                         else argv)))
            print(f'wrote {args.docs}')
        return 0
    if args.config is None:
        p.error('give a CONFIG or --compare')
    if min(args.shape) < 32:
        p.error(f'--shape must be at least 32x32, got {args.shape}')
    params, flops, ops = model_complexity(Config.fromfile(args.config), *args.shape, args.part)
    print(f'{args.config} at {args.shape[0]}x{args.shape[1]}: params {params / 1e6:.2f} M, '
          f'FLOPs {flops / 1e9:.2f} G')
    for op, n in ops.most_common():
        print(f'  {op:24s} {n / 1e9:8.3f} G')
    return 0


if __name__ == '__main__':
    sys.exit(main())
