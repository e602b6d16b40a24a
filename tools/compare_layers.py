"""Compare the dynamic layers on your own mmdet / mmseg config (``--config``), or on the demo data (preset demo, the
default). Run ``python tools/compare_layers.py --help`` for the options; the command line lives in
experiments/demo_comparison/cli.py (experiment code, run from a clone), the ``--config`` comparison in
mmdynconv/comparison (:func:`mmdynconv.comparison.compare_config`). See docs/comparison.md.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone: mmdynconv and experiments/

from experiments.demo_comparison.cli import main, parse_args  # noqa: E402

__all__ = ['main', 'parse_args']

if __name__ == '__main__':
    sys.exit(main())
