"""mmengine hook annealing the attention temperature of DY-Conv / ODConv layers, registry type
``'TemperatureAnnealHook'`` (in mmengine's root ``HOOKS``)."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from .dy_conv import DYConv
from .od_conv import ODConv

LAYERS = (DYConv, ODConv)


@HOOKS.register_module()
class TemperatureAnnealHook(Hook):
    """Set ``temperature`` on every DYConv and ODConv of the model before each training iteration.

    τ goes linearly from ``start`` to ``end`` over the first ``anneal`` epochs (``by_epoch=True``, progress counted in
    iterations, as DY-Conv's and ODConv's released recipes: 30 -> 1 over 10 epochs) or the first ``anneal``
    iterations (``by_epoch=False``), and stays at ``end`` afterwards, also for validation and testing.

    Args:
        start: τ at iteration 0 (30 in both papers). end: final τ (1). anneal: epochs or iterations, >= 1.
        by_epoch: whether ``anneal`` counts epochs.
    """

    def __init__(self, start=30.0, end=1.0, anneal=10, by_epoch=True):
        for name, value in (('start', start), ('end', end)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f'TemperatureAnnealHook: {name} must be a number > 0, got {value!r}')
        if not isinstance(anneal, int) or isinstance(anneal, bool) or anneal < 1:
            raise ValueError(f'TemperatureAnnealHook: anneal must be an int >= 1, got {anneal!r}')
        if not isinstance(by_epoch, bool):
            raise TypeError(f'TemperatureAnnealHook: by_epoch must be a bool, got {by_epoch!r}')
        self.start, self.end, self.anneal, self.by_epoch = float(start), float(end), anneal, by_epoch

    def temperature(self, iteration, iters_per_epoch=None):
        """τ before training iteration ``iteration`` (0-based)."""
        total = self.anneal * iters_per_epoch if self.by_epoch else self.anneal
        progress = min(iteration / total, 1.0)
        return self.start + (self.end - self.start) * progress

    @staticmethod
    def set_temperature(model, value):
        """Set τ on every DYConv / ODConv in ``model``; returns how many layers were set."""
        if is_model_wrapper(model):
            model = model.module
        layers = [m for m in model.modules() if isinstance(m, LAYERS)]
        for m in layers:
            m.temperature = value
        return len(layers)

    def before_train(self, runner):
        if self.set_temperature(runner.model, self._value(runner)) == 0:
            runner.logger.warning('TemperatureAnnealHook: the model has no DYConv or ODConv layer')

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.set_temperature(runner.model, self._value(runner))

    def _value(self, runner):
        per_epoch = len(runner.train_dataloader) if self.by_epoch else None
        return self.temperature(runner.iter, per_epoch)
