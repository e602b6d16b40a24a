"""Bar plot of the comparison: one panel per task, a pair of bars (pretrained / from scratch) per variant, error bars
= std over seeds (none for a single seed)."""
import math

from .cells import INITS
from .report import INIT_TITLES, TASK_TITLES, aggregate


def bar_plot(results, path):
    """Write the PNG to ``path``; returns the number of panels drawn."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    stats = aggregate(results)
    tasks = [t for t in ('det', 'seg') if any(k[0] == t for k in stats)]
    if not tasks:
        raise ValueError('bar_plot: no results to plot')
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        names = sorted({k[1] for k in stats if k[0] == task}, key=lambda n: (n != 'plain', n))
        width = 0.8 / len(INITS)
        scale = 100 if task == 'det' else 1
        for j, init in enumerate(INITS):
            xs, means, errs = [], [], []
            for i, name in enumerate(names):
                s = stats.get((task, name, init))
                if s is None:
                    continue
                xs.append(i + (j - (len(INITS) - 1) / 2) * width)
                means.append(s['mean'] * scale)
                errs.append(0 if math.isnan(s['std']) else s['std'] * scale)
            ax.bar(xs, means, width, yerr=errs, capsize=3, label=INIT_TITLES[init])
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha='right')
        ax.set_title(TASK_TITLES[task] + (' × 100' if task == 'det' else ''), fontsize=10)
        ax.set_ylabel('mean ± std over seeds')
        ax.legend(fontsize=8)
        ax.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return len(tasks)
