"""Benchmark mmdynconv's ops and layers against baselines measured in the same run (logic: mmdynconv.benchmark).

    python tools/benchmark.py ddf|ddf_up|convs|bandwidth ... [--device cpu|cuda] [--dtype float32 bfloat16]
        [--shapes full|small] [--repeat N] [--warmup N] [--budget S] [--threads N] [--out DIR]
    python tools/benchmark.py --all [options]        # every benchmark; rewrites docs/benchmarks.md
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone without installing

from mmdynconv.benchmark.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
