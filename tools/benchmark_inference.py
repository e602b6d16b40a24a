"""Inference benchmark: eager train-mode forward vs eval vs FDConv inference mode vs ONNX Runtime (CPU), as ratios.

    python tools/benchmark_inference.py [--out work_dirs/benchmark_inference] [--threads 1] [--clock wall|cpu]
                                        [--no-detector]

Per layer (DDF, DDF-Up, FDConv 3×3 / 1×1) and for the FDConv demo detector; writes OUT/results.md and the ONNX files.
Logic: mmdynconv/deploy/benchmark.py (timing from the shared harness, mmdynconv/benchmark/harness.py).
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone without installing

from mmdynconv.deploy.benchmark import DETECTOR, run  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='work_dirs/benchmark_inference', help='results folder')
    p.add_argument('--threads', type=int, default=1, help='threads for PyTorch and ONNX Runtime (>= 1)')
    p.add_argument('--repeat', type=int, default=10, help='timed runs per measurement (>= 1)')
    p.add_argument('--clock', choices=('wall', 'cpu'), default='wall',
                   help='wall: elapsed time; cpu: process CPU time, blind to waiting for a core (shared machines)')
    p.add_argument('--detector', default=DETECTOR, help='detector config (its tensor forward is timed)')
    p.add_argument('--no-detector', action='store_true', help='layers only')
    args = p.parse_args(argv)
    if args.threads < 1 or args.repeat < 1:
        p.error(f'--threads and --repeat must be >= 1, got {args.threads}, {args.repeat}')
    os.makedirs(args.out, exist_ok=True)
    table = run(args.out, None if args.no_detector else args.detector, threads=args.threads, repeat=args.repeat,
                log=lambda m: print(m, flush=True), clock=args.clock)
    with open(osp.join(args.out, 'results.md'), 'w') as f:
        f.write(table)
    print(table)


if __name__ == '__main__':
    main()
