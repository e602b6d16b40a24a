"""Inference benchmark: eager train-mode forward vs eval vs FDConv inference mode vs ONNX Runtime (CPU), as ratios.

    python tools/benchmark_inference.py [--out work_dirs/benchmark_inference] [--no-detector]
                                        [--threads N] [--clock wall|cpu] [--repeat N] [--warmup N] [--budget S]

Per layer (DDF, DDF-Up, FDConv 3×3 / 1×1) and for the FDConv demo detector; writes OUT/results.md and the ONNX files.
Logic: mmdynconv/deploy/benchmark.py (timing from the shared harness, mmdynconv/benchmark/harness.py).
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone without installing

from mmdynconv.benchmark.cli import add_timing_args, check_timing_args, timing  # noqa: E402
from mmdynconv.deploy.benchmark import DETECTOR, run  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='work_dirs/benchmark_inference', help='results folder')
    add_timing_args(p)   # the same timing flags as tools/benchmark.py; --threads also sets ONNX Runtime's
    p.add_argument('--detector', default=DETECTOR, help='detector config (its tensor forward is timed)')
    p.add_argument('--no-detector', action='store_true', help='layers only')
    args = p.parse_args(argv)
    check_timing_args(p, args)
    os.makedirs(args.out, exist_ok=True)
    table = run(args.out, None if args.no_detector else args.detector, threads=args.threads,
                log=lambda m: print(m, flush=True), **timing(args))
    with open(osp.join(args.out, 'results.md'), 'w') as f:
        f.write(table)
    print(table)


if __name__ == '__main__':
    main()
