"""Measure how far our FDConv is from the authors' released module over a grid of layer shapes.

The release (Linwei-Chen/FDConv, ``FDConv_detection/mmdet_custom/FDConv.py``) is not part of this repository: pass
the path of that file. Its ``mmcv.cnn.CONV_LAYERS`` and ``timm`` imports are replaced by stubs while it is imported
(nothing else is changed). For every grid case the release's layer is built, all its parameters and its KSM
BatchNorm statistics are moved away from their initialisation (seeded), its state dict is loaded into our layer
(the release-layout conversion of :mod:`mmdynconv.layers.fdconv_release`), and both run the same input and output
gradient in eval and then train mode, in float32. Printed per case: the largest relative difference
max|ours − release| / max|release| of the output, the input gradient, any parameter gradient and any parameter
gradient with more than one element, then the worst of all cases. For the worst parameter gradient it also prints
the release's own float32 error on it (the release against itself run in float64): the gradients of StarReLU's two
scalars are sums over the batch and the trunk that largely cancel, so float32 rounding alone moves them by up to
several percent.

    python tools/fdconv_release_parity.py /path/to/FDConv/FDConv_detection/mmdet_custom/FDConv.py
"""
import argparse
import contextlib
import copy
import io
import itertools

import torch
from torch import nn

from mmdynconv.layers import FDConv
from mmdynconv.layers.fdconv_release import convert_release_layer, import_fdconv_release

CHANNELS = [(32, 32), (64, 64), (32, 64), (64, 32), (48, 96), (128, 64)]
KERNELS = [(1, 1), (3, 1), (3, 2)]             # (k, stride); FBM on every 3×3 layer, as the release's default
BANDS = [4, 8, 16]
SIZES = [(14, 14), (25, 38), (9, 13)]


def supported(ci, co, k, n):
    """The release reshapes the Co·k × (⌊Ci·k/2⌋+1) coefficients into n equal bands and inverts the FFT without
    an explicit size (so Ci·k must be even)."""
    return (co * k * (ci * k // 2 + 1)) % n == 0 and (ci * k) % 2 == 0


def perturb(layer, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            scale = 0.1 * float(p.std()) if name == 'dft_weight' else 0.3
            p.add_(torch.randn(p.shape, generator=gen) * scale)
        for m in layer.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)


def rel(a, b):
    return float((a.detach() - b.detach()).abs().max() / b.detach().abs().max().clamp_min(1e-12))


@contextlib.contextmanager
def default_dtype(dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def run(layer, x0, grad_seed, training, dtype):
    """Output, input gradient and parameter gradients of one forward/backward in ``dtype``."""
    with default_dtype(dtype):
        layer.train(training)
        layer.zero_grad()
        x = x0.to(dtype, copy=True).requires_grad_()
        y = layer(x)
        grad = torch.randn(y.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=torch.float32)
        y.backward(grad.to(y.dtype))
    return y, x.grad, {name: p.grad for name, p in layer.named_parameters()}


def compare(release_cls, ci, co, k, stride, n, size, seed, batch):
    """Worst relative differences ours vs release (float32) and, for the worst parameter gradient, the release's
    own float32 error on it (against the release run in float64, as far as the release honours float64)."""
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):   # the release prints its kernel_num
        theirs = release_cls(in_channels=ci, out_channels=co, kernel_size=k, stride=stride, padding=k // 2,
                             bias=True, kernel_num=n)
    perturb(theirs, seed)
    theirs64 = copy.deepcopy(theirs).double()
    ours = FDConv(ci, co, k, stride=stride, padding=k // 2, bias=True, kernel_num=n)
    ours.load_state_dict({key: v.clone() for key, v in theirs.state_dict().items()})
    x0 = torch.randn(batch, ci, *size, generator=torch.Generator().manual_seed(seed + 1))
    worst = {'y': 0.0, 'grad_x': 0.0, 'param_grads': 0.0, 'non_scalar_param_grads': 0.0}
    worst_param, release_own = '', 0.0
    num_maps = len(ours.fbm.cutoffs) if ours.fbm is not None else 0
    for training in (False, True):
        y_r, gx_r, g_r = run(theirs, x0, seed + 2, training, torch.float32)
        y_o, gx_o, g_o = run(ours, x0, seed + 2, training, torch.float32)
        _, _, g_64 = run(theirs64, x0, seed + 2, training, torch.float64)
        g_r, g_64 = dict(g_r), dict(g_64)
        errors = convert_release_layer(g_r, '', num_maps) + convert_release_layer(g_64, '', num_maps)
        if errors or set(g_r) != set(g_o):
            raise RuntimeError(f'parameter names do not match: {errors} {sorted(set(g_r) ^ set(g_o))}')
        worst['y'] = max(worst['y'], rel(y_o, y_r))
        worst['grad_x'] = max(worst['grad_x'], rel(gx_o, gx_r))
        for name, g in g_r.items():
            error = rel(g_o[name], g)
            if g.numel() > 1:
                worst['non_scalar_param_grads'] = max(worst['non_scalar_param_grads'], error)
            if error > worst['param_grads']:
                worst['param_grads'], worst_param = error, name
                release_own = rel(g, g_64[name].float())
    return worst, worst_param, release_own


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('release', help='path of the release\'s FDConv.py')
    parser.add_argument('--batch', type=int, default=4,
                        help='samples per input (4; at 2 a training-mode BatchNorm over the pooled vectors outputs '
                             '±1 whatever its input, so the KSM trunk gradients are rounding noise)')
    args = parser.parse_args(argv)
    release_cls = import_fdconv_release(args.release).FDConv
    torch.set_num_threads(1)
    overall = {'y': 0.0, 'grad_x': 0.0, 'param_grads': 0.0, 'non_scalar_param_grads': 0.0}
    cases, worst_case = 0, ''
    for seed, ((ci, co), (k, stride), n, size) in enumerate(itertools.product(CHANNELS, KERNELS, BANDS, SIZES)):
        if not supported(ci, co, k, n):
            continue
        worst, param, release_own = compare(release_cls, ci, co, k, stride, n, size, seed, args.batch)
        cases += 1
        print(f'Ci={ci:3d} Co={co:3d} k={k} stride={stride} n={n:2d} HxW={size[0]}x{size[1]}: '
              + ', '.join(f'{key} {value:.1e}' for key, value in worst.items())
              + f' ({param}; the release\'s own fp32 error on it: {release_own:.1e})', flush=True)
        if worst['param_grads'] > overall['param_grads']:
            worst_case = f'{param}, whose own fp32 error in the release is {release_own:.1e}'
        overall = {key: max(overall[key], worst[key]) for key in overall}
    print(f'worst over {cases} cases (eval and train): '
          + ', '.join(f'{key} {value:.1e}' for key, value in overall.items()) + f' ({worst_case})')


if __name__ == '__main__':
    main()
