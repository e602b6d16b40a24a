"""mmengine hook annealing the attention temperature of the layers whose declaration lists it (DY-Conv, ODConv),
registry type ``'TemperatureAnnealHook'`` (in mmengine's root ``HOOKS``)."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS, MODELS

from .declarations import layers_with_hook

__all__ = ['TemperatureAnnealHook']


@HOOKS.register_module()
class TemperatureAnnealHook(Hook):
    """Set ``temperature`` before each training iteration on every layer of the model whose declaration
    (:mod:`.declarations`) lists this hook: DY-Conv, ODConv and KernelWarehouse.

    τ goes linearly from ``start`` to ``end`` over the first ``anneal`` epochs (``by_epoch=True``, progress counted in
    iterations, as DY-Conv's and ODConv's released recipes: 30 -> 1 over 10 epochs) or the first ``anneal``
    iterations (``by_epoch=False``), and stays at ``end`` afterwards, also for validation and testing.

    The schedule is ODConv's released one: training iteration t (0-based, counted from the start of training) runs
    with τ_t = start + (end − start) · min((t + 1) / T, 1), T the number of annealing iterations (the authors update
    τ with ``batch_idx + 1`` before each batch), so the first iteration already runs one step below ``start``, the
    last annealing iteration (t = T − 1) at ``end``; ``before_train`` sets the value for t − 1 (``start`` when
    training starts at iteration 0, as the authors' code does before its loop).

    Args:
        start: τ at annealing progress 0, before the first iteration (30 in both papers). end: final τ (1; it may be
            0 for KernelWarehouse, whose τ weights a fixed cell assignment: its release anneals 1 -> 0; DY-Conv and
            ODConv divide by τ).
        anneal: epochs or iterations, >= 1. by_epoch: whether ``anneal`` counts epochs.
    """

    def __init__(self, start=30.0, end=1.0, anneal=10, by_epoch=True):
        for name, value, zero_ok in (('start', start, False), ('end', end, True)):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or value < 0 or value == 0 and not zero_ok:
                raise ValueError(f'TemperatureAnnealHook: {name} must be a number {">=" if zero_ok else ">"} 0, got '
                                 f'{value!r}')
        if not isinstance(anneal, int) or isinstance(anneal, bool) or anneal < 1:
            raise ValueError(f'TemperatureAnnealHook: anneal must be an int >= 1, got {anneal!r}')
        if not isinstance(by_epoch, bool):
            raise TypeError(f'TemperatureAnnealHook: by_epoch must be a bool, got {by_epoch!r}')
        self.start, self.end, self.anneal, self.by_epoch = float(start), float(end), anneal, by_epoch

    def temperature(self, iteration, iters_per_epoch=None):
        """τ for training iteration ``iteration`` (0-based): the value after ``iteration + 1`` annealing steps."""
        return self._annealed(iteration + 1, iters_per_epoch)

    def _annealed(self, steps, iters_per_epoch):
        total = self.anneal * iters_per_epoch if self.by_epoch else self.anneal
        return self.start + (self.end - self.start) * min(steps / total, 1.0)

    @staticmethod
    def set_temperature(model, value):
        """Set τ on every layer of ``model`` that uses this hook; returns how many layers were set."""
        if is_model_wrapper(model):
            model = model.module
        kinds = tuple(MODELS.module_dict[name] for name in layers_with_hook('TemperatureAnnealHook'))
        layers = [m for m in model.modules() if isinstance(m, kinds)]
        for m in layers:
            m.temperature = value
        return len(layers)

    def before_train(self, runner):
        if self.set_temperature(runner.model, self._annealed(runner.iter, self._per_epoch(runner))) == 0:
            runner.logger.warning(f'TemperatureAnnealHook: the model has no layer with a temperature (types '
                                  f'{", ".join(layers_with_hook("TemperatureAnnealHook"))})')

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.set_temperature(runner.model, self.temperature(runner.iter, self._per_epoch(runner)))

    def _per_epoch(self, runner):
        return len(runner.train_dataloader) if self.by_epoch else None
