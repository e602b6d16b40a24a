"""Aggregation of the comparison's results: ``results.csv`` (one row per run) and the markdown table (mean ± std
over seeds per variant and initialisation, with the seed count and the difference to the plain model)."""
import math
import statistics

from mmdynconv.comparison.config_report import mean_std, write_rows

from .cells import INITS

CSV_FIELDS = ('task', 'variant', 'init', 'seed', 'metric', 'value', 'wall_s', 'max_grad_norm')
SPIKE = 1e3  # a logged gradient norm above this (the clip threshold is 35) marks a loss spike
TASK_TITLES = dict(det='Detector: Faster R-CNN tiny R50-FPN, bbox mAP', seg='Segmenter: semantic FPN tiny R50, mIoU')
INIT_TITLES = dict(pretrained='fine-tuned from pretrained', scratch='from scratch')


def write_csv(results, path):
    """One row per finished fine-tuning run, sorted by task, variant, init, seed."""
    rows = sorted(results, key=lambda r: (r['task'], r['variant'] != 'plain', r['variant'], r['init'], r['seed']))
    write_rows(rows, CSV_FIELDS, path)


def aggregate(results):
    """{(task, variant, init): dict(mean, std, n, values, wall_s)}; std is the sample std (nan for one seed)."""
    groups = {}
    for r in results:
        groups.setdefault((r['task'], r['variant'], r['init']), []).append(r)
    stats = {}
    for key, rs in groups.items():
        values = [r['value'] for r in sorted(rs, key=lambda r: r['seed'])]
        stats[key] = dict(mean_std(values), values=values, wall_s=statistics.fmean(r['wall_s'] for r in rs))
    return stats


def _fmt(value, task):
    return f'{value * 100:.1f}' if task == 'det' else f'{value:.1f}'


def _cell(s, ref, task):
    if s is None:
        return '—'
    std = '' if math.isnan(s['std']) else f' ± {_fmt(s["std"], task)}'
    delta = '' if ref is None or ref is s else f' ({"+" if s["mean"] >= ref["mean"] else "−"}' \
                                                f'{_fmt(abs(s["mean"] - ref["mean"]), task)})'
    return f'{_fmt(s["mean"], task)}{std}{delta} [n={s["n"]}]'


def markdown_table(results):
    """Markdown: one table per task; rows are variants (plain first), columns the two initialisations.

    Detector numbers are bbox mAP × 100; each cell is ``mean ± std (± difference to plain) [n=seeds]``."""
    stats = aggregate(results)
    lines = []
    for task in ('det', 'seg'):
        names = []
        for (t, name, _init) in stats:
            if t == task and name not in names:
                names.append(name)
        if not names:
            continue
        names.sort(key=lambda n: (n != 'plain', n))
        inits = [i for i in INITS if any((task, n, i) in stats for n in names)]
        lines += [f'**{TASK_TITLES[task]}**', '',
                  '| variant | ' + ' | '.join(INIT_TITLES[i] for i in inits) + ' | s / run |',
                  '|---|' + '---:|' * len(inits) + '---:|']
        for name in names:
            cells = [_cell(stats.get((task, name, i)), stats.get((task, 'plain', i)), task) for i in inits]
            walls = [stats[(task, name, i)]['wall_s'] for i in inits if (task, name, i) in stats]
            lines.append(f'| {name} | ' + ' | '.join(cells) + f' | {statistics.fmean(walls):.0f} |')
        lines.append('')
    spikes = sorted((r for r in results if (r.get('max_grad_norm') or 0) > SPIKE),
                    key=lambda r: (r['task'], r['variant'], r['init'], r['seed']))
    if spikes:
        lines += [f'Runs whose logged gradient norm exceeded {SPIKE:.0e} (clipped to 35 before the step): '
                  + ', '.join(f'{r["task"]} {r["variant"]} {INIT_TITLES[r["init"]]} seed {r["seed"]} '
                              f'({r["max_grad_norm"]:.1e})' for r in spikes) + '.', '']
    return '\n'.join(lines)
