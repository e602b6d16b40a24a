"""Cost of each compared model, measured in one process on one device with the same batches:

- ``params``: parameter count;
- ``flops``: :func:`mmdynconv.utils.complexity.flop_analyzer` of the tensor-mode forward of one image of the first
  validation batch (two-stage detectors: on the fixed proposals of ``model_complexity``); needs torch >= 2.4,
  otherwise None with the reason in ``flops_note``;
- ``train_step_ms``: median over ``iters`` training steps (``model.train_step`` with the config's optimiser) of the
  first training batch, after one warm-up step;
- ``peak_mib``: peak memory allocated during one training step beyond what was live before it (weights, gradients
  and optimiser state);
- ``infer_img_s``: images per second of ``model.test_step`` (post-processing included) on the first validation
  batch, median over ``iters`` calls.
"""
import gc
import math

import torch

from ..benchmark.harness import peak_mib, time_ms

__all__ = ['first_batches', 'count_flops', 'measure_model', 'measure_costs']


def first_batches(cfg):
    """The first train and val batches of ``cfg`` (loaded once, with no worker processes)."""
    import copy

    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    init_default_scope(cfg.default_scope)
    batches = []
    for key in ('train_dataloader', 'val_dataloader'):
        loader_cfg = copy.deepcopy(cfg[key])
        loader_cfg.update(num_workers=0, persistent_workers=False)
        loader_cfg.pop('prefetch_factor', None)
        batches.append(next(iter(Runner.build_dataloader(loader_cfg, seed=0))))
    return batches


class _TensorForward(torch.nn.Module):
    def __init__(self, model, samples):
        super().__init__()
        self.model, self.samples = model, samples

    def forward(self, inputs):
        from ..utils.complexity import _two_stage_forward
        if getattr(self.model, 'rpn_head', None) is not None and hasattr(self.model, 'roi_head'):
            return _two_stage_forward(self.model, inputs, self.samples)
        return self.model._forward(inputs, self.samples)


def count_flops(model, val_batch):
    """(FLOPs of one image, note): note is '' or why the count is not available."""
    from ..ops.compat import CUSTOM_OP_REASON, HAS_CUSTOM_OP
    if not HAS_CUSTOM_OP:
        return None, f'n/a: {CUSTOM_OP_REASON}'
    from ..utils.complexity import flop_analyzer
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(val_batch, False)
        inputs, samples = data['inputs'][:1], data['data_samples'][:1]
        try:
            return int(flop_analyzer(_TensorForward(model, samples), (inputs,)).total()), ''
        except Exception as e:  # a model the tracer cannot follow: say so in the table rather than fail the run
            return None, f'n/a: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ""}'


def measure_model(cfg, model_cfg, train_batch, val_batch, iters, device):
    """The cost dict of one model (see the module docstring)."""
    import copy

    from mmengine.config import ConfigDict
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, DefaultScope
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(ConfigDict(copy.deepcopy(model_cfg))).to(device)
        params = sum(p.numel() for p in model.parameters())
        flops, note = count_flops(model, val_batch)
        model.train()
        optim_cfg = copy.deepcopy(cfg.optim_wrapper)
        if optim_cfg.get('type') == 'AmpOptimWrapper' and device != 'cuda':
            optim_cfg['type'] = 'OptimWrapper'
            optim_cfg.pop('loss_scale', None)
        optim = build_optim_wrapper(model, optim_cfg)

        def train_step():
            model.train_step(copy.copy(train_batch), optim)
        train_ms = time_ms(train_step, device, warmup=1, repeat=iters, budget_s=math.inf)
        peak = peak_mib(train_step, device)
        model.eval()

        def infer():
            with torch.no_grad():
                model.test_step(copy.copy(val_batch))
        infer_ms = time_ms(infer, device, warmup=1, repeat=iters, budget_s=math.inf)
    images = len(val_batch['inputs'])
    return dict(params=params, flops=flops, flops_note=note, train_step_ms=round(train_ms, 2),
                peak_mib=round(peak, 1), infer_img_s=round(images / (infer_ms / 1e3), 3),
                train_batch=len(train_batch['inputs']), val_batch=images)


def measure_costs(cfg, models, iters=5, log=print):
    """{name: cost dict} of ``models`` ({name: model cfg}), all measured here, on this process's device."""
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    train_batch, val_batch = first_batches(cfg)
    costs = {}
    label = torch.cuda.get_device_name() if device == 'cuda' else f'cpu ({torch.get_num_threads()} threads)'
    for name, model_cfg in models.items():
        c = costs[name] = dict(measure_model(cfg, model_cfg, train_batch, val_batch, iters, device), device=label)
        gc.collect()
        if device == 'cuda':
            torch.cuda.empty_cache()
        flops = 'FLOPs n/a' if c['flops'] is None else f'{c["flops"] / 1e9:.2f} GFLOPs'
        log(f'[compare] cost {name}: {c["params"] / 1e6:.2f} M params, {flops}, train step '
            f'{c["train_step_ms"]:.0f} ms, peak {c["peak_mib"]:.0f} MiB, {c["infer_img_s"]:.2f} img/s')
    return costs
