"""``DumpMetricsHook``: writes the final validation metrics of a Runner to a json file (how the comparison runner
reads a run's result)."""
import json
import os
import os.path as osp

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class DumpMetricsHook(Hook):
    """After every validation, write ``{metric: value}`` plus ``iter`` to ``out_file`` (atomically: a file that
    exists is complete)."""

    priority = 'VERY_LOW'

    def __init__(self, out_file):
        if not isinstance(out_file, str) or not out_file:
            raise ValueError(f'DumpMetricsHook: out_file must be a non-empty path, got {out_file!r}')
        self.out_file = out_file

    def after_val_epoch(self, runner, metrics=None):
        values = {k: float(v) for k, v in (metrics or {}).items()}
        values['iter'] = runner.iter
        os.makedirs(osp.dirname(osp.abspath(self.out_file)), exist_ok=True)
        tmp = self.out_file + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(values, f, indent=1)
        os.replace(tmp, self.out_file)
