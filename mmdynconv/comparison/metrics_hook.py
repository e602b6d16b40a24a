"""Hooks of the comparison runs: ``DumpMetricsHook`` writes a Runner's final validation metrics to a json file (how
the comparison runner reads a run's result); ``KSMNormTrainHook`` keeps FDConv's KSM BatchNorms in training mode."""
import json
import os
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..layers.kernel_spatial_modulation import ksm_norms_train

__all__ = ['DumpMetricsHook', 'KSMNormTrainHook']


@HOOKS.register_module()
class DumpMetricsHook(Hook):
    """After every validation, write ``{metric: value}`` plus ``iter`` to ``out_file`` (atomically: a file that
    exists is complete). In a distributed run only the main process writes (every rank holds the same metrics; two
    ranks renaming one temporary file raced)."""

    priority = 'VERY_LOW'

    def __init__(self, out_file):
        if not isinstance(out_file, str) or not out_file:
            raise ValueError(f'DumpMetricsHook: out_file must be a non-empty path, got {out_file!r}')
        self.out_file = out_file

    def after_val_epoch(self, runner, metrics=None):
        if not is_main_process():
            return
        values = {k: float(v) for k, v in (metrics or {}).items()}
        values['iter'] = runner.iter
        os.makedirs(osp.dirname(osp.abspath(self.out_file)), exist_ok=True)
        tmp = self.out_file + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(values, f, indent=1)
        os.replace(tmp, self.out_file)


@HOOKS.register_module()
class KSMNormTrainHook(Hook):
    """Keep FDConv's KSM BatchNorms in training mode during training (the remedy tested in docs/comparison.md):
    ``norm_eval=True`` and frozen stages otherwise leave them in eval mode with their initial statistics (mean 0,
    variance 1), so the KSM trunk is not normalised and its attentions can run away when fine-tuning."""

    priority = 'LOW'

    def before_train(self, runner):
        if ksm_norms_train(_unwrap(runner.model)) == 0:
            runner.logger.warning('KSMNormTrainHook: the model has no FDConv KSM layer')

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        ksm_norms_train(_unwrap(runner.model))


def _unwrap(model):
    from mmengine.model import is_model_wrapper
    return model.module if is_model_wrapper(model) else model
