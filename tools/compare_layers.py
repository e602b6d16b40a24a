"""Compare the dynamic layers on your own mmdet / mmseg config (``--config``), or on the demo data (preset demo, the
default, run from a clone). ``python tools/compare_layers.py --help`` lists the options; the command line is
:mod:`mmdynconv.comparison.cli`, the comparison :func:`mmdynconv.comparison.compare_config`, the demo preset
experiments/demo_comparison/. See docs/comparison.md.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone: mmdynconv and experiments/

from mmdynconv.comparison.cli import main, parse_args  # noqa: E402

__all__ = ['main', 'parse_args']

if __name__ == '__main__':
    sys.exit(main())
