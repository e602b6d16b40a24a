"""Tables and plot of a ``--config`` comparison: accuracy (mean ± std over seeds, difference to plain) next to cost
as ratios to the plain model, all costs measured in the same invocation on the same device."""
import csv
import json
import math
import statistics

__all__ = ['CSV_FIELDS', 'write_rows', 'mean_std', 'write_csv', 'aggregate', 'markdown_table', 'cost_plot']

COST_FIELDS = ('params', 'flops', 'train_step_ms', 'peak_mib', 'infer_img_s')
COST_TITLES = dict(params='params', flops='FLOPs', train_step_ms='train step', peak_mib='peak mem',
                   infer_img_s='infer img/s')
CSV_FIELDS = ('variant', 'seed', 'metric', 'value', 'wall_s') + COST_FIELDS + tuple(
    f'{k}_ratio' for k in COST_FIELDS) + ('device', 'flops_note', 'metrics')


def write_rows(rows, fields, path):
    """A CSV file of ``rows`` (dicts) with the columns ``fields`` (other keys ignored)."""
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fields, extrasaction='ignore')
        writer.writeheader()
        writer.writerows(rows)


def mean_std(values):
    """dict(mean, std, n) of ``values``; std is the sample std (nan for one value)."""
    values = list(values)
    return dict(mean=statistics.fmean(values), std=statistics.stdev(values) if len(values) > 1 else math.nan,
                n=len(values))


def _ratio(costs, name, key):
    v, p = costs.get(name, {}).get(key), costs.get('plain', {}).get(key)
    return None if v is None or not p else v / p


def write_csv(results, costs, path):
    rows = []
    for r in sorted(results, key=lambda r: (r['variant'] != 'plain', r['variant'], r['seed'])):
        c = costs.get(r['variant'], {})
        row = dict(r, metrics=json.dumps(r.get('metrics', {}), sort_keys=True), **{k: c.get(k) for k in COST_FIELDS},
                   device=c.get('device'), flops_note=c.get('flops_note'))
        row.update({f'{k}_ratio': _ratio(costs, r['variant'], k) for k in COST_FIELDS})
        rows.append(row)
    write_rows(rows, CSV_FIELDS, path)


def aggregate(results):
    """{variant: dict(mean, std, n)} of the primary metric (sample std; nan for one seed)."""
    groups = {}
    for r in results:
        groups.setdefault(r['variant'], []).append(r['value'])
    return {v: mean_std(x) for v, x in groups.items()}


def _scale(metric):
    """×100 for fractions (mmdet's COCO mAP is in [0, 1]); mmseg's mIoU is already in %."""
    return 100.0 if metric.startswith(('coco/', 'pascal_voc/')) else 1.0


def _plain_value(key, v):
    if v is None:
        return 'n/a'
    return {'params': f'{v / 1e6:.2f} M', 'flops': f'{v / 1e9:.2f} G', 'train_step_ms': f'{v:.0f} ms',
            'peak_mib': f'{v:.0f} MiB', 'infer_img_s': f'{v:.2f}'}[key]


def markdown_table(results, costs, metric, variants, layers=None, refused=None):
    """One row per variant (plain first): metric mean ± std (± difference to plain) [n], then the cost ratios;
    the plain row gives the absolute costs."""
    stats, scale = aggregate(results), _scale(metric)
    ref = stats.get('plain')
    device = next((c.get('device') for c in costs.values() if c.get('device')), 'n/a')
    title = f'{metric}' + (' × 100' if scale != 1 else '')
    lines = [f'| variant | change | {title} | ' + ' | '.join(COST_TITLES[k] for k in COST_FIELDS) + ' |',
             '|---|---|---:|' + '---:|' * len(COST_FIELDS)]
    for name in variants:
        s = stats.get(name)
        if s is None:
            cell = '—'
        else:
            std = '' if math.isnan(s['std']) else f' ± {s["std"] * scale:.1f}'
            delta = '' if name == 'plain' or ref is None else \
                f' ({"+" if s["mean"] >= ref["mean"] else "−"}{abs(s["mean"] - ref["mean"]) * scale:.1f})'
            cell = f'{s["mean"] * scale:.1f}{std}{delta} [n={s["n"]}]'
        c = costs.get(name, {})
        if name == 'plain':
            cost_cells = [_plain_value(k, c.get(k)) for k in COST_FIELDS]
        else:
            cost_cells = ['n/a' if _ratio(costs, name, k) is None else f'×{_ratio(costs, name, k):.2f}'
                          for k in COST_FIELDS]
        lines.append(f'| {name} | {(layers or {}).get(name, "—")} | {cell} | ' + ' | '.join(cost_cells) + ' |')
    notes = sorted({c['flops_note'] for c in costs.values() if c.get('flops_note')})
    lines += ['', f'Costs measured on {device}, all in one invocation (the one that ran the comparison, before its '
              f'runs): plain row absolute (FLOPs of one image, train step time and peak memory per training batch, '
              f'inference images/s), other rows as ratios to it.']
    if notes:
        lines.append('FLOPs ' + '; '.join(notes) + '.')
    if refused:
        lines += ['', 'Not applicable to this config:'] + [f'- {msg}' for msg in refused.values()]
    return '\n'.join(lines) + '\n'


def cost_plot(results, costs, metric, path):
    """Metric (mean ± std over seeds) against FLOPs and train-step-time ratios; returns the number of points."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    stats, scale = aggregate(results), _scale(metric)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    points = 0
    for ax, key in zip(axes, ('flops', 'train_step_ms')):
        for name, s in stats.items():
            x = 1.0 if name == 'plain' else _ratio(costs, name, key)
            if x is None:
                continue
            ax.errorbar([x], [s['mean'] * scale], yerr=[0 if math.isnan(s['std']) else s['std'] * scale],
                        fmt='o', capsize=3)
            ax.annotate(name, (x, s['mean'] * scale), textcoords='offset points', xytext=(4, 4), fontsize=8)
            points += 1
        ax.set_xlabel(f'{COST_TITLES[key]} / plain')
        ax.set_ylabel(metric + (' × 100' if scale != 1 else '') + ' (mean ± std over seeds)')
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return points
