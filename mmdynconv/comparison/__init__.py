"""The layer comparison of ``tools/compare_layers.py``: protocol (data, schedule, seeds), cells, a resumable runner,
aggregation into ``results.csv`` / a markdown table, and the bar plot.

Importing this package does not import mmengine's Runner; :mod:`.metrics_hook` (imported by the per-run configs)
registers the hook that records a run's metrics.
"""
from .cells import Job, Variant, finetune_jobs, pretrain_jobs, variants
from .plot import bar_plot
from .protocol import FULL, PROTOCOLS, QUICK, Protocol
from .report import aggregate, markdown_table, write_csv
from .runner import collect_results, run_comparison

__all__ = ['FULL', 'PROTOCOLS', 'QUICK', 'Job', 'Protocol', 'Variant', 'aggregate', 'bar_plot', 'collect_results',
           'finetune_jobs', 'markdown_table', 'pretrain_jobs', 'run_comparison', 'variants', 'write_csv']
