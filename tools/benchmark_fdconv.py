"""Benchmark FDConv: the lean default path against the straightforward implementation and a plain conv.

    python tools/benchmark_fdconv.py [--quick] [--device cpu|cuda] [--repeats N] [--threads N] [--csv PATH]
        [--shape CI CO K H W B ...]

For every layer shape it measures forward+backward time (median of ``--repeats``) and peak memory of one
forward+backward above what inputs and parameters already hold, for (1) ``nn.Conv2d`` of the same shape, (2)
``FDConv.forward_reference`` (SPEC §2 written straightforwardly) and (3) ``FDConv.forward`` (lean, with its default
backend: the fused Triton kernels on CUDA), all in this process, and prints a table with the ratios lean/reference and
lean/plain conv; the same rows go to a CSV file. On CUDA it also measures (4) the lean path forced onto its torch
code (``MMDYNCONV_BACKEND=reference``), the gain of the Triton kernels.

Shapes: ResNet-50 bottleneck conv2 (3×3, FBM) and conv3 (1×1) of each stage at the stage resolutions of a 224×224
input, and two 3×3 layers at FPN-level resolutions of an 800×1216 detection input (batch 8 and 16 on GPU). On CPU
the inputs are 112×112 and 400×608 with batches 2 and 4. ``--quick`` keeps three shapes; ``--shape`` (repeatable)
benchmarks your own.

Peak memory is ``torch.cuda.max_memory_allocated`` on GPU; on CPU it is the process's peak resident set size
(``VmHWM``, reset through ``/proc/self/clear_refs``), which includes allocator and library scratch space.
"""
import argparse
import ctypes
import csv
import gc
import multiprocessing
import os
import re
import statistics
import time

import torch
from torch import nn

from mmdynconv.layers import FDConv

# name, Ci, Co, k, stride, H, W, batch (GPU); CPU uses the *_cpu sizes
GPU_CASES = [
    ('r50-s1-conv2', 64, 64, 3, 56, 56, 8), ('r50-s1-conv3', 64, 256, 1, 56, 56, 8),
    ('r50-s2-conv2', 128, 128, 3, 28, 28, 8), ('r50-s2-conv3', 128, 512, 1, 28, 28, 8),
    ('r50-s3-conv2', 256, 256, 3, 14, 14, 8), ('r50-s3-conv3', 256, 1024, 1, 14, 14, 8),
    ('r50-s4-conv2', 512, 512, 3, 7, 7, 8), ('r50-s4-conv3', 512, 2048, 1, 7, 7, 8),
    ('fpn-s2-conv2', 128, 128, 3, 100, 152, 16), ('fpn-s3-conv2', 256, 256, 3, 50, 76, 16),
]
CPU_CASES = [
    ('r50-s1-conv2', 64, 64, 3, 28, 28, 2), ('r50-s1-conv3', 64, 256, 1, 28, 28, 2),
    ('r50-s2-conv2', 128, 128, 3, 14, 14, 2), ('r50-s2-conv3', 128, 512, 1, 14, 14, 2),
    ('r50-s3-conv2', 256, 256, 3, 7, 7, 2), ('r50-s3-conv3', 256, 1024, 1, 7, 7, 2),
    ('r50-s4-conv2', 512, 512, 3, 4, 4, 2), ('r50-s4-conv3', 512, 2048, 1, 4, 4, 2),
    ('fpn-s2-conv2', 128, 128, 3, 50, 76, 4), ('fpn-s3-conv2', 256, 256, 3, 25, 38, 4),
]
QUICK = ('r50-s1-conv2', 'r50-s4-conv2', 'fpn-s3-conv2')
IMPLS = ('plain', 'reference', 'lean')
CUDA_IMPLS = IMPLS + ('lean_torch',)
MIN_MIB = 1.0  # memory ratios against a baseline below this are not meaningful (reported as nan)
NAN = float('nan')


class Meter:
    """Peak memory above a baseline: CUDA allocator statistics, or the process's peak resident set size on CPU."""

    def __init__(self, device):
        self.device = device
        self.cuda = device.type == 'cuda'
        if not self.cuda:  # glibc: return every freed block over 64 KiB to the OS, so that VmHWM tracks live tensors
            libc = ctypes.CDLL('libc.so.6')
            libc.mallopt(-3, 64 * 1024)    # M_MMAP_THRESHOLD (fixed, no dynamic growth)
            libc.mallopt(-1, 128 * 1024)   # M_TRIM_THRESHOLD

    def start(self):
        gc.collect()
        sync(self.device)
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
            self.base = _status_kib('VmRSS') * 1024

    def peak_mib(self):
        sync(self.device)
        peak = torch.cuda.max_memory_allocated(self.device) if self.cuda else _status_kib('VmHWM') * 1024
        return max(peak - self.base, 0) / 2 ** 20


def _status_kib(field):
    with open('/proc/self/status') as f:
        return int(re.search(rf'{field}:\s+(\d+)', f.read()).group(1))


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def build(case, device, kernel_num):
    """(x, {impl: (callable, parameters)}) for one layer shape."""
    _, ci, co, k, h, w, b = case
    torch.manual_seed(0)
    conv = nn.Conv2d(ci, co, k, padding=k // 2, bias=False).to(device)
    layer = FDConv(ci, co, k, padding=k // 2, bias=False, kernel_num=kernel_num).to(device).train()
    x = torch.randn(b, ci, h, w, device=device, requires_grad=True)
    fns = dict(plain=(conv, list(conv.parameters())), reference=(layer.forward_reference, list(layer.parameters())),
               lean=(layer, list(layer.parameters())), lean_torch=(_on_torch_backend(layer), list(layer.parameters())))
    return x, fns


def _impls(device):
    return CUDA_IMPLS if device.type == 'cuda' else IMPLS


def _on_torch_backend(layer):
    """The layer's forward with the ops' backend forced to the torch code (the backward follows the forward)."""
    def forward(x):
        previous = os.environ.get('MMDYNCONV_BACKEND')
        os.environ['MMDYNCONV_BACKEND'] = 'reference'
        try:
            return layer(x)
        finally:
            if previous is None:
                del os.environ['MMDYNCONV_BACKEND']
            else:
                os.environ['MMDYNCONV_BACKEND'] = previous
    return forward


def step(fn, x, params):
    x.grad = None
    for p in params:
        p.grad = None
    fn(x).sum().backward()


def time_case(case, device, kernel_num, repeats):
    """Median forward+backward milliseconds per implementation."""
    x, fns = build(case, device, kernel_num)
    result = {}
    for impl in _impls(device):
        fn, params = fns[impl]
        for _ in range(2):
            step(fn, x, params)
        times = []
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            step(fn, x, params)
            sync(device)
            times.append(time.perf_counter() - start)
        result[impl] = statistics.median(times) * 1e3
    return result


def memory_cases(cases, device, kernel_num):
    """Peak MiB of one forward+backward (after a warm-up step) per case and implementation.

    On CPU this runs in its own process (see ``Meter``), so the allocator settings do not slow down the timings.
    """
    meter = Meter(device)
    results = []
    for case in cases:
        x, fns = build(case, device, kernel_num)
        result = {}
        for impl in _impls(device):
            fn, params = fns[impl]
            step(fn, x, params)
            x.grad = None
            for p in params:
                p.grad = None
            meter.start()
            step(fn, x, params)
            result[impl] = meter.peak_mib()
        results.append(result)
        del x, fns
    return results


def make_row(case, times, memory):
    name, ci, co, k, h, w, b = case
    row = dict(case=name, batch=b, cin=ci, cout=co, k=k, hw=f'{h}x{w}', fbm=k == 3,
               fold=co * ci * k * k <= (ci + co) * h * w)
    for impl in times:
        row[f'{impl}_ms'], row[f'{impl}_mib'] = times[impl], memory[impl]
    for metric, floor in (('ms', 0.0), ('mib', MIN_MIB)):
        for base, label in (('reference', 'ref'), ('plain', 'plain'), ('lean_torch', 'torch')):
            if f'{base}_{metric}' not in row:
                continue
            denominator = row[f'{base}_{metric}']
            row[f'lean/{label}_{metric}'] = row[f'lean_{metric}'] / denominator if denominator > floor else NAN
    return row


COLUMNS = [('case', 'case', '{}'), ('batch', 'B', '{}'), ('cin', 'Ci', '{}'), ('cout', 'Co', '{}'), ('k', 'k', '{}'),
           ('hw', 'H×W', '{}'), ('fold', 'fold', '{}'),
           ('plain_ms', 'plain ms', '{:.1f}'), ('reference_ms', 'ref ms', '{:.1f}'), ('lean_ms', 'lean ms', '{:.1f}'),
           ('lean/ref_ms', 'lean/ref t', '{:.2f}'), ('lean/plain_ms', 'lean/plain t', '{:.1f}'),
           ('plain_mib', 'plain MiB', '{:.1f}'), ('reference_mib', 'ref MiB', '{:.1f}'),
           ('lean_mib', 'lean MiB', '{:.1f}'), ('lean/ref_mib', 'lean/ref mem', '{:.2f}'),
           ('lean/plain_mib', 'lean/plain mem', '{:.1f}'), ('lean_torch_ms', 'lean-torch ms', '{:.1f}'),
           ('lean/torch_ms', 'lean/torch t', '{:.2f}'), ('lean/torch_mib', 'lean/torch mem', '{:.2f}')]


def format_table(rows):
    columns = [c for c in COLUMNS if c[0] in rows[0]]
    cells = [[title for _, title, _ in columns]] + [[fmt.format(r[key]) for key, _, fmt in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ['| ' + ' | '.join(c.rjust(wd) for c, wd in zip(row, widths)) + ' |' for row in cells]
    lines.insert(1, '|' + '|'.join('-' * (wd + 2) for wd in widths) + '|')
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--quick', action='store_true', help=f'only {", ".join(QUICK)}')
    parser.add_argument('--repeats', type=int, default=None, help='timed iterations (default 10 GPU, 3 CPU)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default 1 on CPU: multi-threaded timings on a shared machine swing by '
                             'orders of magnitude)')
    parser.add_argument('--kernel-num', type=int, default=64)
    parser.add_argument('--shape', type=int, nargs=6, action='append', metavar=('CI', 'CO', 'K', 'H', 'W', 'B'),
                        help='benchmark this layer shape instead of the presets (repeatable)')
    parser.add_argument('--csv', default=None, help='CSV path (default benchmark_results/fdconv_<device>.csv)')
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads or device.type == 'cpu':
        torch.set_num_threads(args.threads or 1)
    cases = GPU_CASES if device.type == 'cuda' else CPU_CASES
    if args.shape:
        cases = [(f'custom-{i}', *shape) for i, shape in enumerate(args.shape)]
    elif args.quick:
        cases = [c for c in cases if c[0] in QUICK]
    repeats = args.repeats or (10 if device.type == 'cuda' else 3)
    where = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU, {torch.get_num_threads()} threads'
    print(f'FDConv benchmark on {where} (GPU available: {torch.cuda.is_available()}); torch {torch.__version__}; '
          f'kernel_num={args.kernel_num}; forward+backward, median of {repeats}')
    if device.type == 'cpu':
        with multiprocessing.get_context('spawn').Pool(1, initializer=torch.set_num_threads,
                                                       initargs=(torch.get_num_threads(),)) as pool:
            memory = pool.apply(memory_cases, (cases, device, args.kernel_num))
    else:
        memory = memory_cases(cases, device, args.kernel_num)
    rows = []
    for case, mem in zip(cases, memory):
        rows.append(make_row(case, time_case(case, device, args.kernel_num, repeats), mem))
        print(f'  done {case[0]}', flush=True)
    print(format_table(rows))
    path = args.csv or os.path.join('benchmark_results', f'fdconv_{device.type}.csv')
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
