"""Measure why a from-scratch FDConv-ResNet detector trails the plain one (see docs/comparison.md).

    python tools/probe_fdconv_training.py --data work_dirs/compare/data/eval/coco/ --steps 30 [--lr-mult auto]
    python tools/probe_fdconv_training.py --trace CONFIG [--trace-dir DIR] [--trace-stop N] [--trace-ksm-norm-train]

An experiment, run from a clone: the command line and the logic live in experiments/fdconv_probe/.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone: mmdynconv and experiments/

from experiments.fdconv_probe.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
