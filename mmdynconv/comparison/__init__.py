"""The layer comparison of ``tools/compare_layers.py``: :func:`compare_config` compares the layers' variants on any
mmdet / mmseg config (:mod:`.config_runner`; costs :mod:`.cost`, tables :mod:`.config_report`); :class:`Run` and
:func:`run_queue` train any list of configs the same way (the demo preset does).

Importing this package does not import mmengine's Runner; :mod:`.metrics_hook` (imported by the per-run configs)
registers the hook that records a run's metrics.
"""
from .config_runner import ConfigRefused, NothingToReport, Run, collect, compare_config, run_all, run_queue

__all__ = ['ConfigRefused', 'NothingToReport', 'Run', 'collect', 'compare_config', 'run_all', 'run_queue']
