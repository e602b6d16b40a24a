"""Benchmarks of the ops and layers against baselines measured in the same run (see :mod:`.harness`).

CLI: ``python tools/benchmark.py NAME... | --all`` (:mod:`.cli`). Needs torch; the layer benchmarks need mmengine.
"""
from .harness import Case, Settings, measure, peak_mib, run_benchmark, time_ms
from .registry import MODULES, Benchmark, get_benchmark

__all__ = ['Case', 'Settings', 'Benchmark', 'MODULES', 'get_benchmark', 'measure', 'peak_mib', 'run_benchmark',
           'time_ms']
