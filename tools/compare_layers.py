"""Compare the dynamic layers on the demo data under the papers' protocol and from scratch; write the tables.

    python tools/compare_layers.py --out work_dirs/compare            # the full comparison (resumable)
    python tools/compare_layers.py --out /tmp/cmp --quick             # pipeline check: one seed, a few iterations
    python tools/compare_layers.py --out work_dirs/compare --report   # tables from the runs finished so far

Pretrains a plain and a DDF-ResNet backbone on a different generated task, then fine-tunes every variant (plain,
DDF-Up neck, DDF-ResNet, FDConv-ResNet, and the baselines whose configs exist under configs/compare) with the same
schedule and seeds, from the pretrained backbone and from scratch. Writes ``results.csv`` (one row per run),
``table.md`` (mean ± std over seeds) and ``comparison.png`` into ``--out``. A finished run (its ``result.json``) is
skipped, so an interrupted comparison continues where it stopped. Protocol: :mod:`mmdynconv.comparison.protocol`.
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone without installing

from mmdynconv.comparison import (  # noqa: E402
    PROTOCOLS,
    bar_plot,
    collect_results,
    markdown_table,
    run_comparison,
    write_csv,
)
from mmdynconv.comparison.cells import INITS  # noqa: E402


def _seeds(text):
    try:
        seeds = tuple(int(s) for s in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected comma-separated seeds >= 0, got {text!r}')
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f'expected distinct comma-separated seeds >= 0, got {text!r}')
    return seeds


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='work_dirs/compare', help='output folder (default: work_dirs/compare)')
    p.add_argument('--quick', action='store_true', help='tiny data, one seed, a few iterations (checks the pipeline)')
    p.add_argument('--tasks', default=None, help='comma-separated subset of det,seg (default: both)')
    p.add_argument('--variants', default=None, help='comma-separated variant names (plain is always included)')
    p.add_argument('--inits', default=','.join(INITS), help=f'comma-separated subset of {",".join(INITS)}')
    p.add_argument('--det-seeds', type=_seeds, default=None, help='detector seeds (default: the protocol\'s)')
    p.add_argument('--seg-seeds', type=_seeds, default=None, help='segmenter seeds (default: the protocol\'s)')
    p.add_argument('--jobs', type=int, default=1, help='training runs at a time (default 1)')
    p.add_argument('--threads', type=int, default=1, help='OMP_NUM_THREADS of each run (default 1)')
    p.add_argument('--dry-run', action='store_true', help='list the runs (done / to do) and exit')
    p.add_argument('--report', action='store_true', help='only write the tables from the finished runs')
    args = p.parse_args(argv)
    if args.tasks is not None:
        args.tasks = tuple(args.tasks.split(','))
        if not args.tasks or not set(args.tasks) <= {'det', 'seg'}:
            p.error(f'--tasks must be a comma-separated subset of det,seg, got {",".join(args.tasks)!r}')
    args.inits = tuple(args.inits.split(','))
    if not set(args.inits) <= set(INITS):
        p.error(f'--inits must be a comma-separated subset of {",".join(INITS)}, got {",".join(args.inits)!r}')
    if args.jobs < 1 or args.threads < 1:
        p.error(f'--jobs and --threads must be >= 1, got {args.jobs} and {args.threads}')
    if osp.isfile(args.out):
        p.error(f'--out must be a folder, but {args.out!r} is a file')
    return args


def main(argv=None):
    args = parse_args(argv)
    protocol = PROTOCOLS['quick' if args.quick else 'full'].with_seeds(args.det_seeds, args.seg_seeds, args.tasks)
    names = args.variants.split(',') if args.variants else None
    start = time.time()
    if not args.report:
        run_comparison(protocol, args.out, names, args.inits, args.jobs, args.threads, dry_run=args.dry_run)
        if args.dry_run:
            return 0
    results = collect_results(args.out)
    if not results:
        print(f'no finished runs under {args.out}')
        return 1
    write_csv(results, osp.join(args.out, 'results.csv'))
    table = markdown_table(results)
    with open(osp.join(args.out, 'table.md'), 'w') as f:
        f.write(table)
    bar_plot(results, osp.join(args.out, 'comparison.png'))
    print(table)
    print(f'[compare] {len(results)} runs; this invocation took {time.time() - start:.0f} s; '
          f'wrote {osp.join(args.out, "results.csv")}, table.md, comparison.png')
    return 0


if __name__ == '__main__':
    sys.exit(main())
