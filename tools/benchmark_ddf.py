"""Benchmark the DDF op against an unfold formulation, a depthwise and a dense k×k convolution, in one run.

For every shape, kernel size and dtype it measures forward time (no grad), forward+backward time (gradients of
all inputs) and the peak memory allocated during forward+backward beyond the inputs, for

    ddf_triton      mmdynconv.ops.ddf(..., backend='triton')      (CUDA only)
    ddf_reference   mmdynconv.ops.ddf(..., backend='reference')
    unfold          F.unfold + the materialised (B, C, k², H·W) kernel: the naive formulation
    depthwise       F.conv2d(groups=C), the cost DDF is designed to match
    dense           F.conv2d, C → C

and prints a table with ratios to the depthwise conv and to the unfold formulation, and writes it as CSV.
Shapes (issue 3): ResNet-50 stage shapes 64×56², 128×28², 256×14², 512×7² at batch 32 and the FPN level
2×256×200×304; on CPU the batch defaults to 2 (the FPN level to 1) and Triton is skipped.

    python tools/benchmark_ddf.py [--quick] [--device cpu|cuda] [--out results.csv]

Baselines whose memory or work would be excessive are skipped with a reason (``--max-unfold-gib``,
``--max-dense-gflop``). CPU peak memory comes from the profiler's allocation events. On a shared machine use
``--threads 1`` for stable CPU timings.
"""
import argparse
import csv
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from mmdynconv.ops import ddf, triton_available  # noqa: E402

METHODS = ('ddf_triton', 'ddf_reference', 'unfold', 'depthwise', 'dense')
STAGES = ((64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7))
FPN = (256, 200, 304)
DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}


def unfold_ddf(x, fc, fs, k):
    """DDF (one head, stride 1) by unfolding x and materialising the combined kernel: (B, C, H, W)."""
    B, C, H, W = x.shape
    cols = F.unfold(x, k, padding=k // 2).view(B, C, k * k, H, W)
    return (cols * (fs.unsqueeze(1) * fc.reshape(B, C, k * k, 1, 1))).sum(2)


def make_case(method, shape, k, dtype, device):
    """(function, inputs requiring grad) for one method at x shape (B, C, H, W)."""
    B, C, H, W = shape
    x = torch.randn(shape, device=device, dtype=dtype)
    if method in ('depthwise', 'dense'):
        w = torch.randn((C, 1 if method == 'depthwise' else C, k, k), device=device, dtype=dtype) / k
        groups = C if method == 'depthwise' else 1
        return (lambda x, w: F.conv2d(x, w, padding=k // 2, groups=groups)), [x, w]
    fc = torch.randn((B, C, k, k), device=device, dtype=dtype) / k
    fs = torch.randn((B, k * k, H, W), device=device, dtype=dtype) / k
    if method == 'unfold':
        return (lambda x, fc, fs: unfold_ddf(x, fc, fs, k)), [x, fc, fs]
    backend = 'triton' if method == 'ddf_triton' else 'reference'
    return (lambda x, fc, fs: ddf(x, fc, fs, k, backend=backend)), [x, fc, fs]


def skip_reason(method, shape, k, dtype, device, args):
    B, C, H, W = shape
    if method == 'ddf_triton' and (device != 'cuda' or not triton_available()):
        return 'needs CUDA and triton'
    size = torch.finfo(dtype).bits // 8
    if method == 'unfold' and 4 * B * C * k * k * H * W * size > args.max_unfold_gib * 2**30:
        return f'unfold buffers > {args.max_unfold_gib} GiB'
    if method == 'dense' and 6 * B * C * C * k * k * H * W / 1e9 > args.max_dense_gflop:
        return f'> {args.max_dense_gflop} GFLOP'
    return ''


def sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def time_ms(step, device, budget_s, max_reps):
    """Median wall time of ``step`` in ms, after a warm-up, over as many runs as fit in ``budget_s``."""
    step()
    sync(device)
    start = time.perf_counter()
    step()
    sync(device)
    first = time.perf_counter() - start
    times = []
    for _ in range(max(1, min(max_reps, int(budget_s / max(first, 1e-6))))):
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def peak_mib(step, device):
    """Peak memory allocated while ``step`` runs, beyond what was allocated before, in MiB."""
    if device == 'cuda':
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == '[memory]')
    current = peak = 0
    for _, nbytes in events:
        current += nbytes
        peak = max(peak, current)
    return peak / 2**20


def measure(method, shape, k, dtype, device, args):
    fn, inputs = make_case(method, shape, k, dtype, device)
    with torch.no_grad():
        out = fn(*inputs)
    grad = torch.randn_like(out)
    del out
    for t in inputs:
        t.requires_grad_()

    def forward():
        with torch.no_grad():
            fn(*inputs)

    def forward_backward():
        torch.autograd.grad(fn(*inputs), inputs, grad)

    fwd = time_ms(forward, device, args.budget, args.max_reps)
    fwd_bwd = time_ms(forward_backward, device, args.budget, args.max_reps)
    x_mib = inputs[0].numel() * inputs[0].element_size() / 2**20
    return fwd, fwd_bwd, peak_mib(forward_backward, device), x_mib


def shapes_for(args):
    stages = STAGES[:1] + STAGES[3:] if args.quick else STAGES
    shapes = [(args.batch, *s) for s in stages]
    if not args.quick:
        shapes.append((args.fpn_batch, *FPN))
    return shapes


def run(args):
    rows = []
    for dtype_name in args.dtypes:
        for shape in shapes_for(args):
            for k in args.kernel_sizes:
                group = []
                for method in args.methods:
                    row = dict(shape='x'.join(map(str, shape)), k=k, dtype=dtype_name, method=method,
                               fwd_ms='', fwd_bwd_ms='', peak_mib='', peak_vs_x='', fwd_bwd_vs_depthwise='',
                               fwd_bwd_vs_unfold='', fwd_vs_depthwise='', note='')
                    reason = skip_reason(method, shape, k, DTYPES[dtype_name], args.device, args)
                    if reason:
                        row['note'] = 'skipped: ' + reason
                    else:
                        try:
                            fwd, fwd_bwd, peak, x_mib = measure(method, shape, k, DTYPES[dtype_name], args.device,
                                                                args)
                            row.update(fwd_ms=fwd, fwd_bwd_ms=fwd_bwd, peak_mib=peak, peak_vs_x=peak / x_mib)
                        except torch.cuda.OutOfMemoryError:
                            row['note'] = 'out of memory'
                            torch.cuda.empty_cache()
                    group.append(row)
                add_ratios(group)
                for row in group:
                    print(format_row(row), flush=True)
                rows.extend(group)
    return rows


def add_ratios(group):
    base = {r['method']: r for r in group}
    for row in group:
        for col, ref, key in (('fwd_bwd_vs_depthwise', 'depthwise', 'fwd_bwd_ms'),
                              ('fwd_bwd_vs_unfold', 'unfold', 'fwd_bwd_ms'),
                              ('fwd_vs_depthwise', 'depthwise', 'fwd_ms')):
            if row[key] != '' and ref in base and base[ref][key] != '':
                row[col] = row[key] / base[ref][key]


COLUMNS = (('shape', 17, ''), ('k', 2, ''), ('dtype', 8, ''), ('method', 13, ''), ('fwd_ms', 9, '.2f'),
           ('fwd_bwd_ms', 10, '.2f'), ('peak_mib', 9, '.1f'), ('peak_vs_x', 9, '.2f'),
           ('fwd_bwd_vs_depthwise', 20, '.2f'), ('fwd_bwd_vs_unfold', 17, '.3f'), ('fwd_vs_depthwise', 16, '.2f'),
           ('note', 0, ''))


def format_row(row):
    return ' '.join(format(row[name], fmt).rjust(width) if row[name] != '' and fmt else str(row[name]).rjust(width)
                    for name, width, fmt in COLUMNS)


def parse_args(argv=None):
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--device', default='cuda' if cuda else 'cpu', choices=['cpu', 'cuda'])
    p.add_argument('--quick', action='store_true', help='two stage shapes, k=3, short timing budget')
    p.add_argument('--batch', type=int, help='batch of the ResNet stage shapes (default 32 on CUDA, 2 on CPU)')
    p.add_argument('--fpn-batch', type=int, help='batch of the FPN level (default 2 on CUDA, 1 on CPU)')
    p.add_argument('--kernel-sizes', type=int, nargs='+', help='default 3 5 7 (3 with --quick)')
    p.add_argument('--dtypes', nargs='+', choices=list(DTYPES), help='default float32 bfloat16 on CUDA, '
                   'float32 on CPU')
    p.add_argument('--methods', nargs='+', choices=METHODS, default=list(METHODS))
    p.add_argument('--budget', type=float, help='seconds of timed runs per measurement (default 1, quick 0.2)')
    p.add_argument('--max-reps', type=int, default=50)
    p.add_argument('--max-unfold-gib', type=float, default=40.0 if cuda else 6.0)
    p.add_argument('--max-dense-gflop', type=float, default=float('inf') if cuda else 60.0)
    p.add_argument('--threads', type=int, help='torch CPU threads')
    p.add_argument('--out', default='benchmark_results/ddf.csv', help='CSV output path')
    args = p.parse_args(argv)
    on_cuda = args.device == 'cuda'
    args.batch = args.batch or (32 if on_cuda else 2)
    args.fpn_batch = args.fpn_batch or (2 if on_cuda else 1)
    args.kernel_sizes = args.kernel_sizes or ([3] if args.quick else [3, 5, 7])
    args.dtypes = args.dtypes or (['float32', 'bfloat16'] if on_cuda else ['float32'])
    args.budget = args.budget if args.budget is not None else (0.2 if args.quick else 1.0)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device_name = torch.cuda.get_device_name() if args.device == 'cuda' else f'CPU, {torch.get_num_threads()} threads'
    print(f'# DDF benchmark on {device_name}, torch {torch.__version__}; ratios < 1 mean faster than the baseline')
    print(' '.join(name.rjust(width) for name, width, _ in COLUMNS))
    rows = run(args)
    if os.path.dirname(args.out):
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=[c[0] for c in COLUMNS])
        writer.writeheader()
        writer.writerows(rows)
    print(f'# wrote {args.out}')


if __name__ == '__main__':
    main()
