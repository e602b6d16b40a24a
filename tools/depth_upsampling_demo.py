"""Guided depth upsampling with DDF-Up: data, baselines, training over seeds, RMSE table and figure, in one command.

    python tools/depth_upsampling_demo.py [--data-root data/rgbd_shapes] [--out work_dirs/depth_upsampling_demo]
                                          [--scales 4 8] [--seeds 0 1 2] [--max-iters N] [--only-data]

Writes the synthetic RGB-D scenes (if missing), then OUT/results.md, OUT/results.json and OUT/figure.png.
See docs/depth_upsampling.md; the logic lives in experiments/depth_upsampling/demo.py (experiment code, run from a
clone).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone: mmdynconv and experiments/

from experiments.depth_upsampling.demo import ensure_data, run_demo  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data-root', default='data/rgbd_shapes', help='RGB-D data folder (written if missing)')
    p.add_argument('--out', default='work_dirs/depth_upsampling_demo', help='results folder')
    p.add_argument('--scales', type=int, nargs='+', default=[4, 8], choices=[4, 8], help='upsampling factors')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2], help='training seeds (>= 0)')
    p.add_argument('--max-iters', type=int, help='override the configs\' training iterations (>= 1)')
    p.add_argument('--figure-index', type=int, default=0, help='validation image shown in the figure')
    p.add_argument('--only-data', action='store_true', help='only write the RGB-D scenes')
    args = p.parse_args(argv)
    if any(s < 0 for s in args.seeds):
        p.error(f'--seeds must be >= 0, got {args.seeds}')
    if args.max_iters is not None and args.max_iters < 1:
        p.error(f'--max-iters must be >= 1, got {args.max_iters}')
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.only_data:
        print('wrote' if ensure_data(args.data_root) else 'kept existing', 'RGB-D scenes in', args.data_root)
        return
    table = run_demo(args.data_root, args.out, tuple(args.scales), tuple(args.seeds), args.max_iters,
                     args.figure_index, log=lambda msg: print(msg, flush=True))
    print(table)


if __name__ == '__main__':
    main()
