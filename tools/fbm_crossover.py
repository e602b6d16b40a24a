"""Time FBM's two paths (GEMM and FFT, forward+backward, CPU time) over input sizes: the data behind the cost model's
crossover in ``mmdynconv/ops/fdconv_fbm.py`` (``FFT_CROSSOVER``).

    python tools/fbm_crossover.py [--device cpu] [--threads 1] [--channels 64] [--batch 2] [--sizes 8x8 25x38 ...]

Prints, per size, the model's cost ratio ρ (GEMM cost / FFT cost, :func:`fbm_cost_ratio`), the median ms of each
path and their ratio; the crossover is where gemm/fft passes 1.
"""
import argparse
import statistics
import sys
import time

import torch

sys.path.insert(0, '.')
from mmdynconv.ops.fdconv_fbm import fbm_cost_ratio, frequency_band_mix  # noqa: E402

DEFAULT_SIZES = ('8x8', '12x12', '16x16', '20x20', '24x24', '28x28', '32x32', '40x40', '48x48', '56x56', '64x64',
                 '80x80', '96x96', '128x128', '13x13', '25x38', '50x76', '100x152', '200x304', '16x64', '64x16')


def _size(text):
    try:
        h, w = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'--sizes: expected HxW such as 25x38, got {text!r}') from None
    return h, w


def _time(step, device, budget_s, repeat):
    step()
    times = []
    clock = time.perf_counter if device == 'cuda' else time.process_time
    while len(times) < repeat and sum(times) < budget_s:
        if device == 'cuda':
            torch.cuda.synchronize()
        start = clock()
        step()
        if device == 'cuda':
            torch.cuda.synchronize()
        times.append(clock() - start)
    return 1e3 * statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--channels', type=int, default=64)
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--mask-mode', default='release', choices=('release', 'symmetric'))
    p.add_argument('--sizes', nargs='+', type=_size, default=[_size(s) for s in DEFAULT_SIZES])
    p.add_argument('--repeat', type=int, default=7)
    p.add_argument('--budget', type=float, default=2.0, help='seconds of timed runs per measurement, at most')
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f'# torch {torch.__version__}, {args.device}, {args.threads} thread(s), B={args.batch}, '
          f'C={args.channels}, mask_mode={args.mask_mode}, forward+backward (x and att), median ms')
    print('| H×W | ρ (model) | gemm ms | fft ms | gemm / fft |')
    print('|---|---|---|---|---|')
    for h, w in args.sizes:
        torch.manual_seed(0)
        x = torch.randn(args.batch, args.channels, h, w, device=args.device, requires_grad=True)
        att = (2 * torch.rand(args.batch, 3, h, w, device=args.device)).requires_grad_()
        grad = torch.randn_like(x)
        ms = {}
        for path in ('gemm', 'fft'):
            def step():
                out = frequency_band_mix(x, att, mask_mode=args.mask_mode, path=path)
                torch.autograd.grad(out, (x, att), grad)
            ms[path] = _time(step, args.device, args.budget, args.repeat)
        rho = fbm_cost_ratio(h, w, mask_mode=args.mask_mode)
        print(f'| {h}×{w} | {rho:.2f} | {ms["gemm"]:.3g} | {ms["fft"]:.3g} | {ms["gemm"] / ms["fft"]:.2f} |',
              flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
