"""Benchmark output: the environment header, CSV, a markdown table and a PNG plot of one benchmark's rows."""
import csv
import datetime
import os
import platform
import shlex
import sys

import torch

from ..ops.backend import triton_available, triton_interpreter_enabled

__all__ = ['METRICS', 'environment', 'command_line', 'columns', 'write_csv', 'markdown_table', 'plot', 'section',
           'write_outputs']

METRICS = (('fwd_ms', 'fwd ms'), ('fwd_bwd_ms', 'fwd+bwd ms'), ('peak_mib', 'peak MiB'), ('gb_per_s', 'GB/s'))


def environment(device):
    """One line describing the software and the machine a run used."""
    if device == 'cuda':
        where = f'{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})'
    else:
        where = f'CPU {platform.machine()}, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores'
    if triton_available():
        import triton
        tri = f'triton {triton.__version__}' + (' (interpreter)' if triton_interpreter_enabled() else '')
    else:
        tri = 'no triton'
    load = ' load average %.2f %.2f %.2f;' % os.getloadavg() if hasattr(os, 'getloadavg') else ''
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    return f'torch {torch.__version__}, {tri}, Python {platform.python_version()}; {where};{load} {now}'


# environment variables that change what a benchmark measures: shown before the command when set
COMMAND_ENV = ('MMDYNCONV_BACKEND', 'MMDYNCONV_FBM_PATH', 'MMDYNCONV_FDCONV_RELEASE')


def command_line(argv=None, environ=None):
    """The command as typed (``python tools/...`` plus its arguments), preceded by the :data:`COMMAND_ENV`
    variables that are set."""
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    script = os.path.relpath(argv[0]) if os.path.isabs(argv[0]) else argv[0]
    env = [f'{name}={shlex.quote(environ[name])}' for name in COMMAND_ENV if environ.get(name)]
    return ' '.join(env + ['python'] + [shlex.quote(a) for a in [script, *argv[1:]]])


def columns(rows):
    """Column names present in ``rows``, in first-seen order."""
    names = []
    for row in rows:
        names += [k for k in row if k not in names]
    return names


def write_csv(rows, path):
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=columns(rows))
        writer.writeheader()
        writer.writerows(rows)


def _cell(value):
    if value is None or value == '':
        return '—'
    if isinstance(value, float):
        return f'{value:.3g}' if abs(value) < 1e3 else f'{value:.0f}'
    return str(value)


def _measured(row):
    return any(row.get(key) is not None for key, _ in METRICS)


def _case_label(row, case_columns):
    return ', '.join(str(row[n]) for n in case_columns if n != 'method' and row.get(n) not in (None, ''))


def _not_measured(rows, case_columns, all_cases):
    """One line per (method, note) of the rows that measured nothing, naming the cases it covers (``every case``
    when it covers all ``all_cases``)."""
    by_reason = {}
    for row in rows:
        by_reason.setdefault((row['method'], row.get('note', '')), []).append(_case_label(row, case_columns))
    lines = []
    for (method, note), cases in by_reason.items():
        where = ('every case' if set(cases) == all_cases and len(cases) > 1
                 else f'{len(cases)} case{"s" if len(cases) > 1 else ""}: {"; ".join(cases)}')
        lines.append(f'- not measured: `{method}` ({where}) — {note}')
    return lines


def _title(name):
    for key, title in METRICS:
        if name == key:
            return title
        if name.startswith(key + '/'):
            return f'{title.split()[0]} ÷ {name.split("/", 1)[1]}'
    return name


def markdown_table(rows, shown=None):
    """A markdown table of the measured ``rows``: the case columns, then measurements, ratios and the note; columns
    empty in every row dropped, ``—`` where a row has no value (no baseline to divide by, no note). Rows that
    measured nothing (skipped cases) follow the table as one ``not measured`` line per method and reason."""
    measured, skipped = [r for r in rows if _measured(r)], [r for r in rows if not _measured(r)]
    names = [n for n in (shown or columns(rows)) if any(r.get(n) not in (None, '') for r in measured)]
    metric_names = [n for n in names if n.split('/')[0] in dict(METRICS) or n == 'note']
    if len(names) - len(metric_names) > 2:  # the case's own columns say what its group label says
        names.remove('group')
    order = [n for n in names if n not in metric_names] + [n for n in metric_names if n != 'note']
    order += ['note'] if 'note' in names else []
    lines = ['| ' + ' | '.join(_title(n) for n in order) + ' |', '|' + '---|' * len(order)]
    lines += ['| ' + ' | '.join(_cell(r.get(n)) for n in order) + ' |' for r in measured]
    if skipped:
        case_columns = [n for n in order if n not in metric_names] or ['group', 'method']
        all_cases = {_case_label(r, case_columns) for r in rows}
        lines += [''] + _not_measured(skipped, case_columns, all_cases)
    return '\n'.join(lines)


def plot(rows, path, title, metric='fwd_bwd_ms'):
    """Horizontal bars of ``metric`` (forward-only rows: fwd_ms) per group and method, log scale; False without
    matplotlib or without a measured row."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    measured = [r for r in rows if r.get(metric) is not None or r.get('fwd_ms') is not None]
    if not measured:
        return False
    labels = [f'{r["group"]}  {r["method"]}' for r in measured]
    values = [r.get(metric, r.get('fwd_ms')) for r in measured]
    groups = list(dict.fromkeys(r['group'] for r in measured))
    colours = [plt.cm.tab10(groups.index(r['group']) % 10) for r in measured]
    fig, ax = plt.subplots(figsize=(9, 0.25 * len(measured) + 1.2))
    ax.barh(range(len(values)), values, color=colours)
    ax.set_yticks(range(len(values)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale('log')
    ax.set_xlabel(f'{dict(METRICS)[metric]} (forward-only rows: fwd ms), median')
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def section(benchmark, rows, command, env):
    """Markdown for one benchmark: title, description, command, environment and the table."""
    return (f'## {benchmark.title}\n\n{benchmark.description}\n\n```\n{command}\n# {env}\n```\n\n'
            f'{markdown_table(rows)}\n')


def write_outputs(benchmark, rows, out_dir, command, env, device):
    """``<out_dir>/<name>_<device>.{csv,md,png}``; returns the markdown section."""
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, f'{benchmark.name}_{device}')
    write_csv(rows, stem + '.csv')
    text = section(benchmark, rows, command, env)
    with open(stem + '.md', 'w') as f:
        f.write(text)
    drawn = plot(rows, stem + '.png', f'{benchmark.title} ({device})')
    print(f'wrote {stem}.csv, {stem}.md' + (f', {stem}.png' if drawn else ' (no PNG: matplotlib is not installed)'))
    return text
