"""Shared benchmark harness: timing, peak memory, ratios to baselines, and CSV / markdown / PNG output.

Every benchmark is a list of :class:`Case` objects (one method at one shape); :func:`run_benchmark` measures them in
one process and adds ratio columns against the benchmark's named baselines measured in the same run.

Timing (:func:`time_ms`): ``warmup`` untimed runs, then up to ``repeat`` timed runs, stopping early once ``budget_s``
seconds of timed runs have accumulated (at least one timed run); the median in milliseconds. CUDA runs are timed with
a pair of CUDA events each (the stream is synchronised before and after); CPU runs with ``time.perf_counter``
(``clock='wall'``) or with the process's CPU time, ``time.process_time`` (``clock='cpu'``: all threads' CPU time,
blind to the time the process waits for a core, so stable on a shared machine; with one thread it is the latency an
idle machine would show).

Peak memory (:func:`peak_mib`), one method per device, both counting bytes of live tensors that torch allocates during
one run beyond what was allocated before it (allocator caches and library scratch outside torch's allocator, such as
FFT or BLAS workspaces, are not seen):

- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus ``memory_allocated`` before;
- CPU: the torch profiler's allocator events (``profile_memory=True``): the maximum of their running sum.
"""
import contextlib
import dataclasses
import os
import statistics
import sys
import time
from typing import Callable, Optional

import torch

from ..ops.compat import event_start_ns

__all__ = ['SkipCase', 'Case', 'Settings', 'sync', 'time_ms', 'peak_mib', 'measure', 'run_case', 'add_ratios',
           'run_benchmark', 'format_progress']

MIB = 2 ** 20


class SkipCase(Exception):
    """Raised by a case's ``build()`` when the case cannot run here; the message becomes the row's note."""


@dataclasses.dataclass
class Case:
    """One method at one shape.

    ``group``: rows sharing a group (a shape) are compared with each other; ``method``: the row's name;
    ``build()`` returns ``(fn, leaves)`` where ``fn()`` computes the output tensor and ``leaves`` are the tensors
    (inputs and parameters) whose gradients the backward computes; ``skip``: a reason not to run it (printed in
    the row's note); ``params``: extra CSV columns (shape, kernel size, ...); ``backward``: measure forward+backward
    and its peak memory too; ``bytes_moved``: least bytes a forward must read and write (for a bandwidth column).
    """
    group: str
    method: str
    build: Optional[Callable] = None
    skip: str = ''
    params: dict = dataclasses.field(default_factory=dict)
    backward: bool = True
    bytes_moved: int = 0


@dataclasses.dataclass
class Settings:
    """What a run measures: device, dtypes, 'full' or 'small' shapes and the timing parameters."""
    device: str = 'cpu'
    dtypes: tuple = ('float32',)
    shapes: str = 'full'
    repeat: int = 10
    warmup: int = 1
    budget_s: float = 1.0
    clock: str = 'wall'

    @property
    def cuda(self):
        return self.device == 'cuda'


def sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def time_ms(step, device, warmup=1, repeat=10, budget_s=1.0, clock='wall'):
    """Median milliseconds of ``step()`` (see the module docstring); ``clock`` ('wall' or 'cpu') applies on CPU."""
    if clock not in ('wall', 'cpu'):
        raise ValueError(f"time_ms: clock must be 'wall' or 'cpu', got {clock!r}")
    timer = time.process_time if clock == 'cpu' else time.perf_counter
    for _ in range(warmup):
        step()
    sync(device)
    times, spent = [], 0.0
    while len(times) < max(repeat, 1) and (not times or spent < budget_s):
        if device == 'cuda':
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize()
            ms = start.elapsed_time(end)
        else:
            begin = timer()
            step()
            ms = 1e3 * (timer() - begin)
        times.append(ms)
        spent += ms / 1e3
    return statistics.median(times)


def peak_mib(step, device):
    """Peak MiB of live tensors allocated while ``step()`` runs, beyond those allocated before it."""
    if device == 'cuda':
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / MIB
    activities = [torch.profiler.ProfilerActivity.CPU]
    with _quiet_stderr(), torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        step()
    events = sorted((event_start_ns(e), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == '[memory]')
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak / MIB


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (the profiler's native library logs every start and stop there)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, 'w') as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def measure(case, settings):
    """{'fwd_ms', 'fwd_bwd_ms', 'peak_mib'} of one case (the last two only when ``case.backward``)."""
    fn, leaves = case.build()
    timing = dict(warmup=settings.warmup, repeat=settings.repeat, budget_s=settings.budget_s, clock=settings.clock)

    def forward():
        with torch.no_grad():
            fn()

    result = dict(fwd_ms=time_ms(forward, settings.device, **timing))
    if case.backward:
        with torch.no_grad():
            grad = torch.randn_like(fn())

        def forward_backward():
            torch.autograd.grad(fn(), leaves, grad)

        result['fwd_bwd_ms'] = time_ms(forward_backward, settings.device, **timing)
        result['peak_mib'] = peak_mib(forward_backward, settings.device)
    else:
        result['peak_mib'] = peak_mib(forward, settings.device)
    if case.bytes_moved:
        result['gb_per_s'] = case.bytes_moved / (result['fwd_ms'] * 1e6)
    return result


def run_case(case, settings):
    """One result row: the case's params, method, measurements (or a note saying why not)."""
    row = dict(group=case.group, **case.params, method=case.method)
    if case.skip:
        row['note'] = 'skipped: ' + case.skip
        return row
    try:
        row.update(measure(case, settings))
    except SkipCase as reason:
        row['note'] = f'skipped: {reason}'
    except torch.cuda.OutOfMemoryError:
        row['note'] = 'out of memory'
        torch.cuda.empty_cache()
    return row


def add_ratios(rows, baselines, metrics=('fwd_bwd_ms', 'peak_mib')):
    """Add ``<metric>/<baseline>`` columns: each row's metric divided by its group's baseline row's metric."""
    by_group = {}
    for row in rows:
        by_group.setdefault(row['group'], {})[row['method']] = row
    for row in rows:
        for base in baselines:
            ref = by_group[row['group']].get(base)
            for metric in metrics:
                if ref is not None and row.get(metric) is not None and ref.get(metric):
                    row[f'{metric}/{base}'] = row[metric] / ref[metric]
    return rows


def run_benchmark(benchmark, settings, log=print):
    """Measure every case of ``benchmark`` (a :class:`mmdynconv.benchmark.registry.Benchmark`); return the rows."""
    rows = []
    for case in benchmark.cases(settings):
        row = run_case(case, settings)
        log(format_progress(row))
        rows.append(row)
    add_ratios(rows, benchmark.baselines)
    if benchmark.finish is not None:
        benchmark.finish(rows)
    return rows


def format_progress(row):
    measured = ', '.join(f'{k} {row[k]:.3g}' for k in ('fwd_ms', 'fwd_bwd_ms', 'peak_mib', 'gb_per_s') if k in row)
    return f'  {row["group"]:<24} {row["method"]:<18} {measured or row.get("note", "")}'
