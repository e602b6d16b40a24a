"""The guided depth upsampling experiment behind ``tools/depth_upsampling_demo.py`` (docs/depth_upsampling.md).

For every scale: bicubic upsampling and the guided filter (radius and eps chosen on the training split) are
evaluated on the validation split; the DDF-Up network is trained with and without RGB guidance through mmengine's
Runner from the configs under ``experiments/depth_upsampling/configs/``, once per seed; all with
:class:`DepthRMSE`. Writes ``results.md`` (table), ``results.json`` and ``figure.png``.
"""
import json
import os
import os.path as osp
import statistics
import time

import torch

from .baselines import bicubic_upsample, guided_filter
from .dataset import RGBDUpsamplingDataset
from .metric import DepthRMSE
from .scenes import write_rgbd_dataset

VARIANTS = ('unguided', 'guided')
CONFIG = osp.join(osp.dirname(osp.abspath(__file__)), 'configs', 'ddf-up-{variant}_x{scale}_rgbd-shapes.py')
GF_RADII = (1, 2, 4, 8)
GF_EPS = (1e-4, 1e-3, 1e-2)
METRICS = ('rmse', 'rmse_edge', 'rmse_flat')


def ensure_data(data_root, num_train=160, num_val=40, size=128, seed=0):
    """Write the RGB-D scenes to ``data_root`` unless its ``train.json`` and ``val.json`` exist."""
    if all(osp.isfile(osp.join(data_root, f'{s}.json')) for s in ('train', 'val')):
        return False
    write_rgbd_dataset(data_root, num_train, num_val, size, seed)
    return True


def load_split(data_root, split, scale):
    """Whole split as tensors: rgb (N, 3, H, W), depth_lr (N, 1, H/S, W/S), depth (N, 1, H, W)."""
    ds = RGBDUpsamplingDataset(f'{split}.json', scale, data_root=data_root, test_mode=True)
    samples = [ds[i] for i in range(len(ds))]
    inputs = [s['inputs'] for s in samples]
    return (torch.stack([i['rgb'] for i in inputs]), torch.stack([i['depth_lr'] for i in inputs]),
            torch.stack([s['data_samples']['depth'] for s in samples]))


def evaluate(pred, gt):
    """DepthRMSE of (N, 1, H, W) predictions against (N, 1, H, W) ground truth."""
    metric = DepthRMSE()
    metric.process(None, [dict(pred=p[0], gt=g[0]) for p, g in zip(pred, gt)])
    return metric.compute_metrics(metric.results)


def tune_guided_filter(rgb, depth_lr, depth, scale):
    """(radius, eps) of the lowest RMSE on the given (training) split."""
    base = bicubic_upsample(depth_lr, scale)
    scores = {(r, e): evaluate(guided_filter(rgb, base, r, e), depth)['rmse'] for r in GF_RADII for e in GF_EPS}
    return min(scores, key=scores.get)


def train_network(variant, scale, seed, data_root, work_dir, max_iters=None):
    """Train one config through mmengine's Runner; returns (validation metrics, trained model, seconds).

    Resumable: when the run's final checkpoint exists already (an earlier, interrupted demo), it is evaluated
    instead of trained again (seconds is then None)."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    from mmdynconv.utils import allow_runner_checkpoints

    allow_runner_checkpoints()
    cfg = Config.fromfile(CONFIG.format(variant=variant, scale=scale))
    cfg.work_dir = osp.join(work_dir, f'{variant}_x{scale}_seed{seed}')
    cfg.randomness = dict(seed=seed)
    cfg.log_level = 'WARNING'
    cfg.experiment_name = f'depth_{variant}_x{scale}_seed{seed}_{time.time_ns()}'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
    if max_iters is not None:
        cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = max_iters
        cfg.default_hooks.checkpoint.interval = max_iters
        for sched in cfg.param_scheduler:  # the warm-up keeps its length, the decay ends at max_iters
            sched.end = min(sched.end, max_iters) if sched.end < cfg.max_iters else max_iters
            sched.begin = min(sched.begin, sched.end - 1)
    final = osp.join(cfg.work_dir, f'iter_{cfg.train_cfg.max_iters}.pth')
    seconds = None
    if osp.isfile(final):
        cfg.load_from = final
        runner = Runner.from_cfg(cfg)
    else:
        start = time.time()
        runner = Runner.from_cfg(cfg)
        runner.train()
        seconds = time.time() - start
    metrics = runner.val()
    return {k: float(v) for k, v in metrics.items()}, runner.model.eval(), seconds


def _mean_std(values):
    return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def results_table(results, scales, seeds):
    """Markdown table: one row per method, RMSE / edge RMSE / flat RMSE per scale (mean ± std over seeds)."""
    head = '| method | ' + ' | '.join(f'×{s} RMSE | ×{s} edge | ×{s} flat' for s in scales) + ' |'
    lines = [head, '|' + '---|' * (1 + 3 * len(scales))]
    names = dict(bicubic='bicubic', guided_filter='guided filter (He et al.)',
                 unguided='DDF-Up network, unguided', guided='DDF-Up network, RGB-guided')
    for method, name in names.items():
        cells = []
        for s in scales:
            runs = results[s][method]
            for key in METRICS:
                mean, std = _mean_std([r[key] for r in runs])
                cells.append(f'{mean:.1f}' if len(runs) == 1 else f'{mean:.1f} ± {std:.1f}')
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    lines.append('')
    lines.append(f'RMSE in mm on the validation split; trained networks: mean ± std over seeds {list(seeds)}.')
    for s in scales:
        per_seed = ', '.join(f'{v}: ' + ' / '.join(f'{r["rmse"]:.1f}' for r in results[s][v]) for v in VARIANTS)
        lines.append(f'×{s} per-seed RMSE ({per_seed}); guided filter radius, eps = {results[s]["gf_params"]}.')
    return '\n'.join(lines) + '\n'


def save_figure(path, sample, preds, scale_rows):
    """PNG: per scale, row 1 input / guidance / ground truth / guided prediction / its error; row 2 the errors of
    all methods on one colour scale."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2 * len(scale_rows), 5, figsize=(15, 6.2 * len(scale_rows)))
    for row, scale in enumerate(scale_rows):
        rgb, depth_lr, depth = sample[scale]
        p = preds[scale]
        lo, hi = float(depth.min()), float(depth.max())
        errs = {k: (v - depth).abs() for k, v in p.items()}
        emax = max(float(e.max()) for e in errs.values())
        top = [(f'input ×{scale} ({depth_lr.shape[-1]}×{depth_lr.shape[-2]})', depth_lr, 'depth'),
               ('guidance (RGB)', rgb, 'rgb'), ('ground truth', depth, 'depth'),
               ('prediction: guided DDF-Up', p['guided'], 'depth'), ('|error|: guided DDF-Up', errs['guided'], 'err')]
        bottom = [('|error|: bicubic', errs['bicubic'], 'err'),
                  ('|error|: guided filter', errs['guided_filter'], 'err'),
                  ('|error|: unguided DDF-Up', errs['unguided'], 'err'),
                  ('prediction: unguided DDF-Up', p['unguided'], 'depth'),
                  ('prediction: bicubic', p['bicubic'], 'depth')]
        for col, (title, img, kind) in enumerate(top + bottom):
            ax = axes[2 * row + col // 5, col % 5]
            if kind == 'rgb':
                im = ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
            else:
                vmin, vmax, cmap = (0, emax, 'magma') if kind == 'err' else (lo, hi, 'viridis_r')
                im = ax.imshow(img.squeeze().numpy(), vmin=vmin, vmax=vmax, cmap=cmap, interpolation='nearest')
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label='m')
            ax.set_title(title, fontsize=10)
            ax.axis('off')
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run_demo(data_root='data/rgbd_shapes', out_dir='work_dirs/depth_upsampling_demo', scales=(4, 8),
             seeds=(0, 1, 2), max_iters=None, figure_index=0, log=print):
    """Run the whole experiment; returns the markdown table (also written to ``out_dir/results.md``)."""
    os.makedirs(out_dir, exist_ok=True)
    if ensure_data(data_root):
        log(f'wrote RGB-D scenes to {data_root}')
    results, sample, preds = {}, {}, {}
    for scale in scales:
        train = load_split(data_root, 'train', scale)
        rgb, depth_lr, depth = load_split(data_root, 'val', scale)
        gf_params = tune_guided_filter(*train, scale)
        base = bicubic_upsample(depth_lr, scale)
        gf = guided_filter(rgb, base, *gf_params)
        results[scale] = dict(bicubic=[evaluate(base, depth)], guided_filter=[evaluate(gf, depth)],
                              gf_params=gf_params)
        i = figure_index
        sample[scale] = (rgb[i], depth_lr[i], depth[i])
        preds[scale] = dict(bicubic=base[i], guided_filter=gf[i])
        log(f'x{scale} bicubic rmse {results[scale]["bicubic"][0]["rmse"]:.1f} mm, guided filter {gf_params} '
            f'{results[scale]["guided_filter"][0]["rmse"]:.1f} mm')
        for variant in VARIANTS:
            results[scale][variant] = []
            for seed in seeds:
                metrics, model, seconds = train_network(variant, scale, seed, data_root, out_dir, max_iters)
                metrics['train_s'] = seconds
                results[scale][variant].append(metrics)
                how = 'checkpoint of an earlier run' if seconds is None else f'trained in {seconds:.0f} s'
                log(f'x{scale} {variant} seed {seed}: rmse {metrics["rmse"]:.1f} mm '
                    f'(edge {metrics["rmse_edge"]:.1f}, flat {metrics["rmse_flat"]:.1f}), {how}')
                if seed == seeds[0]:
                    with torch.no_grad():
                        preds[scale][variant] = model(dict(rgb=rgb[i:i + 1], depth_lr=depth_lr[i:i + 1]))[0]
    table = results_table(results, scales, seeds)
    with open(osp.join(out_dir, 'results.md'), 'w') as f:
        f.write(table)
    with open(osp.join(out_dir, 'results.json'), 'w') as f:
        json.dump({str(s): {k: v for k, v in r.items()} for s, r in results.items()}, f, indent=1)
    save_figure(osp.join(out_dir, 'figure.png'), sample, preds, scales)
    return table
