"""Benchmark DDF-Up against the other FPN upsamplers, in one run, at the top-down steps of a detection FPN.

For every input level it measures forward time (no grad), forward+backward time (gradients of the input and of
the upsampler's parameters) and the peak memory of forward+backward beyond the inputs, for

    ddf_up            'ddf_up' with the automatic backend (Triton on CUDA, the reference on CPU)
    ddf_up_reference  'ddf_up' forced onto the pure-PyTorch reference
    nearest, bilinear parameter-free interpolation (mmdet's FPN default is nearest)
    deconv            ConvTranspose2d, kernel 4
    pixel_shuffle     mmcv's PixelShufflePack, upsample_kernel 3
    carafe            mmcv's CARAFEPack (CUDA only: mmcv has no CPU kernel)

each built by ``UpsamplerFPN``'s builder exactly as the neck builds it, and prints a table with ratios to nearest
and to CARAFE (when measured), and writes it as CSV. Levels: the P5→P4, P4→P3 and P3→P2 inputs of Faster R-CNN's
FPN at an 800×1216 image (256 channels: 25×38, 50×76, 100×152), batch 2 on GPU, 1 on CPU.

    python tools/benchmark_ddf_up.py [--quick] [--device cpu|cuda] [--dtype float32|bfloat16] [--out results.csv]
"""
import argparse
import csv
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from benchmark_ddf import peak_mib, time_ms  # noqa: E402

import mmdynconv  # noqa: E402,F401
from mmdynconv.models.necks import build_fpn_upsampler  # noqa: E402

METHODS = {
    'ddf_up': dict(type='ddf_up'),
    'ddf_up_reference': dict(type='ddf_up', backend='reference'),
    'nearest': dict(type='nearest'),
    'bilinear': dict(type='bilinear'),
    'deconv': dict(type='deconv', kernel_size=4),
    'pixel_shuffle': dict(type='pixel_shuffle', upsample_kernel=3),
    'carafe': dict(type='carafe', up_kernel=5),
}
LEVELS = ((256, 25, 38), (256, 50, 76), (256, 100, 152))
COLUMNS = ('level', 'method', 'fwd_ms', 'fwdbwd_ms', 'peak_mib', 'fwdbwd_vs_nearest', 'fwdbwd_vs_carafe', 'note')


def skip_reason(method, device):
    if method == 'carafe':
        if device != 'cuda':
            return 'mmcv CARAFE has no CPU kernel'
        import mmcv.ops  # noqa: F401  (registers 'carafe')
    if method == 'ddf_up_reference' and device == 'cpu':
        return 'same as ddf_up on CPU'
    return ''


def measure(method, shape, dtype, device, args):
    channels = shape[1]
    module = build_fpn_upsampler(METHODS[method], channels).to(device=device, dtype=dtype)
    x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
    params = [p for p in module.parameters()]

    def forward():
        with torch.no_grad():
            module(x)

    def forward_backward():
        out = module(x)
        grads = torch.autograd.grad(out.float().sum(), [x] + params)
        del out, grads

    return (time_ms(forward, device, args.budget, args.max_reps),
            time_ms(forward_backward, device, args.budget, args.max_reps), peak_mib(forward_backward, device))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', choices=('cpu', 'cuda'), default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--dtype', choices=('float32', 'bfloat16'), default='float32')
    p.add_argument('--batch', type=int, help='batch size (default: 2 on GPU, 1 on CPU)')
    p.add_argument('--quick', action='store_true', help='the smallest level only')
    p.add_argument('--budget', type=float, default=1.0, help='seconds of timed runs per measurement')
    p.add_argument('--max-reps', type=int, default=50)
    p.add_argument('--threads', type=int, help='torch CPU threads')
    p.add_argument('--out', default='benchmark_results/ddf_up.csv', help='CSV path')
    args = p.parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        p.error('--device cuda: no CUDA device is available')
    if args.batch is not None and args.batch < 1:
        p.error(f'--batch must be >= 1, got {args.batch}')
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    batch = args.batch or (2 if args.device == 'cuda' else 1)
    rows = []
    for c, h, w in LEVELS[:1] if args.quick else LEVELS:
        shape = (batch, c, h, w)
        level = 'x'.join(map(str, shape))
        measured = {}
        for method in METHODS:
            note = skip_reason(method, args.device)
            if not note:
                measured[method] = measure(method, shape, dtype, args.device, args)
            rows.append(dict(level=level, method=method, note=note))
        for row in rows[-len(METHODS):]:
            if row['method'] in measured:
                fwd, fb, peak = measured[row['method']]
                row.update(fwd_ms=f'{fwd:.3f}', fwdbwd_ms=f'{fb:.3f}', peak_mib=f'{peak:.1f}',
                           fwdbwd_vs_nearest=f'{fb / measured["nearest"][1]:.2f}')
                if 'carafe' in measured:
                    row['fwdbwd_vs_carafe'] = f'{fb / measured["carafe"][1]:.2f}'
    widths = {c: max(len(c), *(len(str(r.get(c, ''))) for r in rows)) for c in COLUMNS}
    print(f'device={args.device} dtype={args.dtype} batch={batch} (times: median ms; peak: MiB beyond inputs)')
    print('  '.join(c.ljust(widths[c]) for c in COLUMNS))
    for r in rows:
        print('  '.join(str(r.get(c, '')).ljust(widths[c]) for c in COLUMNS))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
