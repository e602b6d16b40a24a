"""Why does the from-scratch FDConv demo trail the plain ResNet? Per-layer measurements for
``tools/probe_fdconv_training.py``.

* :func:`spectrum_step_gain`: how far one Adam step on the spectrum moves the kernel it encodes. Adam moves every
  parameter entry by about ``lr`` whatever its gradient's scale (exactly ``lr·sign(g)`` on the first step), so a
  plain conv's kernel moves by ``lr`` per entry (rms). FDConv's kernel is a linear function of its spectrum,
  ``W = irfft2(S)·⌊min(Ci, Co)/2⌋``; the gain rms(ΔW) / rms(ΔS) of that map is what Adam's step is multiplied by in
  kernel space. Decoupled weight decay (AdamW) multiplies S, hence W, by ``1 - lr·wd``: the same in both spaces.
* :func:`probe_models`: a plain and an FDConv detector with the *same* initial kernels (the plain state dict loaded
  into FDConv), trained side by side on the same batches with the config's AdamW: per-layer activation and
  output-gradient std at initialisation, loss, and each layer's relative kernel change ``‖W_t − W_0‖ / ‖W_0‖``.
"""
import copy
import json
import os
import os.path as osp

import torch

from mmdynconv.ops.fdconv_spectrum import spectrum_to_weight, weight_to_spectrum


def spectrum_step_gain(in_channels, out_channels, kernel_size, seed=0):
    """dict(gain=rms(ΔW)/rms(ΔS) for a sign step ΔS = ±1, norm_ratio=rms(S_0)/rms(W_0) for a Kaiming W_0)."""
    g = torch.Generator().manual_seed(seed)
    co, ci, k = out_channels, in_channels, kernel_size
    w0 = torch.randn(co, ci, k, k, generator=g, dtype=torch.float64) * (2 / (co * k * k)) ** 0.5
    s0 = weight_to_spectrum(w0)
    step = torch.randint(0, 2, s0.shape, generator=g).to(torch.float64) * 2 - 1
    dw = spectrum_to_weight(s0 + step, co, ci, k) - spectrum_to_weight(s0, co, ci, k)
    rms = lambda t: t.pow(2).mean().sqrt().item()  # noqa: E731
    return dict(gain=rms(dw) / rms(step), norm_ratio=rms(s0) / rms(w0))


def kernel_of(conv):
    """The (Co, Ci, k, k) static kernel of a plain conv or an FDConv (detached copy)."""
    return (conv.static_weight() if hasattr(conv, 'static_weight') else conv.weight).detach().clone()


def bottleneck_convs(backbone):
    """[(name, conv)] of conv1/conv2/conv3 of every bottleneck, in order."""
    out = []
    for stage in range(1, 5):
        for i, block in enumerate(getattr(backbone, f'layer{stage}')):
            for name in ('conv1', 'conv2', 'conv3'):
                out.append((f'layer{stage}.{i}.{name}', getattr(block, name)))
    return out


class _Recorder:
    """Forward/backward hooks recording each conv's output std and output-gradient std."""

    def __init__(self, convs):
        self.act, self.grad, self.handles = {}, {}, []
        for name, conv in convs:
            self.handles.append(conv.register_forward_hook(self._fwd(name)))

    def _fwd(self, name):
        def hook(_module, _inputs, output):
            self.act[name] = output.detach().std().item()
            if output.requires_grad:
                output.register_hook(lambda g: self.grad.__setitem__(name, g.std().item()))
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def _loss(model, batch):
    data = model.data_preprocessor(batch, True)
    losses = model(**data, mode='loss')
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(x.sum() for x in v)
                for k, v in losses.items() if 'loss' in k)
    return total


def probe_models(models, optim_cfgs, batches, log_every=10):
    """Train ``models`` (dict name -> detector, identical initial kernels) on the same ``batches``.

    ``optim_cfgs``: name -> mmengine ``optim_wrapper`` config. Returns dict(stats={step: per-layer act/grad std per
    model} at step 1 (at step 0 mmdet's zero-initialised last BN of every bottleneck stops all conv gradients) and at
    the last step, curve=[(step, {name: loss})], change=per-layer relative kernel change per model at the end,
    names=layer names).
    """
    from mmengine.optim import build_optim_wrapper

    convs = {n: bottleneck_convs(m.backbone) for n, m in models.items()}
    start = {n: {name: kernel_of(c) for name, c in cs} for n, cs in convs.items()}
    wrappers = {n: build_optim_wrapper(m, copy.deepcopy(optim_cfgs[n])) for n, m in models.items()}
    stats, curve = {}, []
    record = {min(1, len(batches) - 1), len(batches) - 1}
    for step, batch in enumerate(batches):
        losses = {}
        for n, model in models.items():
            model.train()
            rec = _Recorder(convs[n]) if step in record else None
            loss = _loss(model, batch)
            wrappers[n].update_params(loss)
            if rec is not None:
                stats.setdefault(step, {})[n] = dict(act=dict(rec.act), grad=dict(rec.grad))
                rec.remove()
            losses[n] = loss.item()
        if step % log_every == 0 or step == len(batches) - 1:
            curve.append((step, losses))
    change = {n: {name: ((kernel_of(c) - start[n][name]).norm() / start[n][name].norm()).item()
                  for name, c in cs} for n, cs in convs.items()}
    return dict(stats=stats, curve=curve, change=change, names=[name for name, _ in next(iter(convs.values()))])


def same_init(plain, fdconv):
    """Load the plain detector's weights into the FDConv detector (kernels converted to spectra); returns the keys
    the FDConv detector did not receive (its KSM / FBM parameters)."""
    result = fdconv.load_state_dict(plain.state_dict(), strict=False)
    if result.unexpected_keys:
        raise RuntimeError(f'unexpected keys loading the plain model into FDConv: {result.unexpected_keys[:5]}')
    return result.missing_keys


def _stage_rows(names, per_model, fn):
    """Aggregate per-layer values into one row per stage: fn(model values dict of a stage) -> cells."""
    rows = []
    for stage in range(1, 5):
        layers = [n for n in names if n.startswith(f'layer{stage}.')]
        rows.append((f'stage {stage} ({len(layers)} convs)', fn(layers, per_model)))
    return rows


def run_probe(plain_config, fdconv_config, data_root, steps=30, seed=0, lr_mult=None, log=print):
    """Build the two detectors from their configs (the FDConv one with the plain one's initial weights), train them
    ``steps`` AdamW steps (the configs' optimizer, constant lr) on the same batches of ``data_root`` (a generated
    COCO folder), optionally a third FDConv copy with ``paramwise_cfg`` ``spectrum`` ``lr_mult``; return markdown."""
    import statistics

    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import Runner

    import mmdynconv  # noqa: F401  (registers the layers)
    init_default_scope('mmdet')
    MMLogger.get_current_instance().setLevel('WARNING')  # mmengine logs every paramwise option otherwise
    cfgs = {}
    for name, path in (('plain', plain_config), ('FDConv', fdconv_config)):
        cfg = Config.fromfile(path)
        cfg.train_dataloader.dataset.data_root = data_root
        cfgs[name] = cfg
    torch.manual_seed(seed)
    plain = MODELS.build(cfgs['plain'].model)
    plain.init_weights()
    models = dict(plain=plain)
    fd = MODELS.build(cfgs['FDConv'].model)
    fd.init_weights()
    missing = same_init(plain, fd)
    models['FDConv'] = fd
    optim = {n: cfgs[n].optim_wrapper for n in models}
    if lr_mult is not None:
        name = f'FDConv, spectrum lr×{lr_mult:.2f}'
        models[name] = copy.deepcopy(fd)
        cfg = copy.deepcopy(cfgs['FDConv'].optim_wrapper)
        # the kernel's step matched to a plain conv's, its weight decay per step kept (decay ∝ lr·decay_mult)
        cfg['paramwise_cfg'] = dict(custom_keys={'spectrum': dict(lr_mult=lr_mult, decay_mult=1 / lr_mult)})
        optim[name] = cfg
    loader = Runner.build_dataloader(cfgs['plain'].train_dataloader, seed=seed)
    batches = []
    while len(batches) < steps:
        for batch in loader:
            batches.append(batch)
            if len(batches) == steps:
                break
    log(f'[probe] {len(models)} models, {steps} steps; FDConv kept its own init for {len(missing)} KSM/FBM tensors')
    res = probe_models(models, optim, batches)
    names, ref = res['names'], 'plain'
    steps_rec = sorted(res['stats'])
    lines = ['**Conv output (activation) and output-gradient std, FDConv / plain, mean [min, max] over the stage\'s '
             'convs, at steps ' + ' and '.join(map(str, steps_rec)) + '**', '',
             '| stage | ' + ' | '.join(f'act. ratio, step {t} | grad. ratio, step {t}' for t in steps_rec) + ' |',
             '|---|' + '---:|' * (2 * len(steps_rec))]

    def ratio(layers, step, key):
        r = [res['stats'][step]['FDConv'][key][n] / res['stats'][step][ref][key][n] for n in layers]
        return f'{statistics.fmean(r):.3f} [{min(r):.3f}, {max(r):.3f}]'
    for label, layers in _stage_rows(names, res, lambda layers, _: layers):
        lines.append(f'| {label} | ' + ' | '.join(f'{ratio(layers, t, "act")} | {ratio(layers, t, "grad")}'
                                                  for t in steps_rec) + ' |')
    model_names = list(models)
    lines += ['', f'**Relative kernel change ‖W_t − W_0‖ / ‖W_0‖ after {steps} AdamW steps, mean over the stage**', '',
              '| stage | ' + ' | '.join(model_names) + ' | FDConv / plain |', '|---|' + '---:|' * (len(models) + 1)]
    for label, layers in _stage_rows(names, res, lambda layers, _: layers):
        means = [statistics.fmean(res['change'][m][n] for n in layers) for m in model_names]
        lines.append(f'| {label} | ' + ' | '.join(f'{v:.4f}' for v in means) + f' | {means[1] / means[0]:.3f} |')
    lines += ['', '**Training loss (sum of the detector losses) on the same batches**', '',
              '| step | ' + ' | '.join(model_names) + ' |', '|---:|' + '---:|' * len(models)]
    for step, losses in res['curve']:
        lines.append(f'| {step} | ' + ' | '.join(f'{losses[m]:.3f}' for m in model_names) + ' |')
    return '\n'.join(lines) + '\n'


def gain_table(backbone):
    """Markdown: the spectrum step gain and norm ratio of every distinct FDConv shape in ``backbone``."""
    from mmdynconv.layers.fdconv import FDConv
    shapes = {}
    for name, m in backbone.named_modules():
        if isinstance(m, FDConv) and m.dynamic:
            shapes.setdefault((m.in_channels, m.out_channels, m.kernel_size), []).append(name)
    lines = ['| Ci → Co, k | layers | ⌊min/2⌋ | rms(S₀)/rms(W₀) | Adam step gain rms(ΔW)/rms(ΔS) |',
             '|---|---:|---:|---:|---:|']
    for (ci, co, k), names in sorted(shapes.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1])):
        g = spectrum_step_gain(ci, co, k)
        lines.append(f'| {ci} → {co}, {k}×{k} | {len(names)} | {max(min(ci, co) // 2, 1)} | {g["norm_ratio"]:.2f} | '
                     f'{g["gain"]:.3f} |')
    return '\n'.join(lines) + '\n'


def _register_trace_hook():
    """Register :class:`FDConvTraceHook` (kept out of import time: mmengine's hooks are optional here)."""
    from mmengine.hooks import Hook
    from mmengine.model import is_model_wrapper
    from mmengine.registry import HOOKS

    from mmdynconv.layers.kernel_spatial_modulation import KernelSpatialModulationGlobal

    @HOOKS.register_module(force=True)
    class FDConvTraceHook(Hook):
        """Per training iteration, append to ``out_file`` (json lines): loss, gradient norm (before clipping), and
        per backbone stage the largest global-KSM kernel gain max_b(max α_in · max α_out · max α_pos · Σ_j π_j) and
        the largest |activation| of the stage output; stops training after ``stop_after`` iterations if given.
        ``ksm_norm_train``: keep every KSM BatchNorm in training mode (an experiment: under ``norm_eval=True`` or in
        a frozen stage they otherwise stay in eval mode with their initial statistics, i.e. do not normalise)."""

        def __init__(self, out_file, stop_after=None, ksm_norm_train=False):
            self.out_file, self.stop_after, self.current = out_file, stop_after, {}
            self.ksm_norm_train, self.ksm = ksm_norm_train, []

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if self.ksm_norm_train:
                for m in self.ksm:
                    m.norm.train()

        def before_train(self, runner):
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            for name, m in model.backbone.named_modules():
                if isinstance(m, KernelSpatialModulationGlobal):
                    m.register_forward_hook(self._gain_hook(name.split('.')[0]))
                    self.ksm.append(m)
            for stage in range(1, 5):
                layer = getattr(model.backbone, f'layer{stage}')
                layer.register_forward_hook(self._act_hook(f'layer{stage}'))
            open(self.out_file, 'w').close()

        def _gain_hook(self, stage):
            def hook(_module, _inputs, out):
                gain = out[0].detach().amax(1) * out[1].detach().amax(1)
                if out[2] is not None:
                    gain = gain * out[2].detach().amax(1)
                if out[3] is not None:
                    gain = gain * out[3].detach().sum(1)
                key = f'gain_{stage}'
                self.current[key] = max(self.current.get(key, 0.0), gain.max().item())
            return hook

        def _act_hook(self, stage):
            def hook(_module, _inputs, out):
                self.current[f'act_{stage}'] = out.detach().abs().max().item()
            return hook

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            loss = float(outputs['loss'].detach()) if outputs else None
            record = dict(iter=runner.iter + 1, loss=loss, **self.current)
            hub = runner.message_hub
            if 'train/grad_norm' in hub.log_scalars:
                record['grad_norm'] = float(hub.get_scalar('train/grad_norm').current())
            with open(self.out_file, 'a') as f:
                f.write(json.dumps(record) + '\n')
            self.current = {}
            if self.stop_after is not None and runner.iter + 1 >= self.stop_after:
                runner.train_loop.stop_training = True

    return FDConvTraceHook


def trace_run(config, work_dir, stop_after=None, ksm_norm_train=False):
    """Train ``config`` (e.g. a comparison run's ``config.py``) with ``FDConvTraceHook``; return its records."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    from mmdynconv.utils import allow_runner_checkpoints
    _register_trace_hook()
    cfg = Config.fromfile(config)
    cfg.work_dir = work_dir
    out_file = osp.join(work_dir, 'trace.jsonl')
    os.makedirs(work_dir, exist_ok=True)
    hooks = [h for h in cfg.get('custom_hooks', []) if h.get('type') != 'DumpMetricsHook']
    cfg.custom_hooks = hooks + [dict(type='FDConvTraceHook', out_file=out_file, stop_after=stop_after,
                                              ksm_norm_train=ksm_norm_train)]
    allow_runner_checkpoints()
    Runner.from_cfg(cfg).train()
    with open(out_file) as f:
        return [json.loads(line) for line in f]


def trace_table(records, every=10):
    """Markdown: every ``every``-th iteration and every iteration whose loss exceeds 5× the running median."""
    import statistics
    keys = [k for k in records[0] if k.startswith(('gain_', 'act_'))] if records else []
    lines = ['| iter | loss | grad norm | ' + ' | '.join(k.replace('_', ' ') for k in keys) + ' |',
             '|---:|---:|---:|' + '---:|' * len(keys)]
    losses = []
    for r in records:
        losses.append(r['loss'])
        spike = len(losses) > 5 and r['loss'] > 5 * statistics.median(losses)
        if r['iter'] % every == 0 or spike or r['iter'] == 1:
            lines.append(f'| {r["iter"]}{" **spike**" if spike else ""} | {r["loss"]:.3g} | '
                         f'{r.get("grad_norm", float("nan")):.3g} | ' + ' | '.join(f'{r[k]:.3g}' for k in keys) + ' |')
    return '\n'.join(lines) + '\n'
