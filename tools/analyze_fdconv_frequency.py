"""Frequency responses of an FDConv layer's candidate kernels (the FDConv paper's motivating figure).

    python tools/analyze_fdconv_frequency.py [--config CFG] [--checkpoint CKPT] [--layer NAME]
        [--in-channels 64 --out-channels 64 --kernel-size 3 --kernel-num 64] [--out fdconv_frequency.png]

The layer comes from a model config (optionally with a checkpoint loaded), from a checkpoint alone (``NAME.spectrum``
of an FDConv checkpoint, or ``NAME.weight`` of a plain conv, converted), or — with neither — a freshly initialised
FDConv of the given shape. Its n candidate kernels are the band kernels W_j = irfft2(spectrum on band j)·s·n
(Σ_j W_j / n is the layer's static kernel). For comparison the same static kernel is split "the CondConv way":
n kernels of the full shape holding disjoint contiguous chunks of the flattened weight (same parameter budget,
partitioned in the spatial domain instead of the frequency domain).

Two measures, each the mean pairwise cosine similarity of the n candidates' magnitude responses:

- spatial: root-mean-square over the Co·Ci filters of the |2-D DFT| of each k×k filter zero-padded to 32×32 (the
  image-frequency response of the kernel; what the PNG shows);
- tiled: |rfft2| of the whole tiled (Co·k, Ci·k) weight, FDW's own parameter domain (disjoint bands give 0).
"""
import argparse
import re

import torch
import torch.nn.functional as F

from mmdynconv.ops.fdconv_spectrum import band_kernels, spectrum_to_weight, weight_to_spectrum, weight_to_tiled

RESPONSE_SIZE = 32


def condconv_split(weight, kernel_num):
    """(n, Co, Ci, k, k): disjoint contiguous chunks of the flattened weight, each zero elsewhere, times n."""
    flat = weight.detach().float().flatten()
    chunks = torch.tensor_split(torch.arange(flat.numel()), kernel_num)
    kernels = torch.zeros(kernel_num, flat.numel())
    for j, index in enumerate(chunks):
        kernels[j, index] = flat[index] * kernel_num
    return kernels.view(kernel_num, *weight.shape)


def spatial_response(kernels):
    """(n, S, S) root-mean-square |DFT| of the k×k filters zero-padded to S×S, zero frequency centred.

    The mean power over the Co·Ci filters is the DFT of their mean autocorrelation (Wiener–Khinchin), which avoids
    an S×S transform per filter.
    """
    n, co, ci, k, _ = kernels.shape
    responses = []
    for kernel in kernels.float():
        flat = kernel.reshape(co * ci, 1, k, k)
        auto = F.conv2d(flat.view(1, co * ci, k, k), flat, padding=k - 1, groups=co * ci).mean((0, 1))
        padded = torch.zeros(RESPONSE_SIZE, RESPONSE_SIZE)
        padded[:2 * k - 1, :2 * k - 1] = auto
        power = torch.fft.fft2(padded.roll((1 - k, 1 - k), (0, 1))).real.clamp_min(0)
        responses.append(power.sqrt())
    return torch.fft.fftshift(torch.stack(responses), dim=(-2, -1))


def tiled_response(kernels):
    """(n, Co·k, ⌊Ci·k/2⌋+1) |rfft2| of the tiled weights."""
    return torch.fft.rfft2(weight_to_tiled(kernels)).abs()


def mean_pairwise_cosine(responses):
    flat = torch.nn.functional.normalize(responses.flatten(1).double(), dim=1)
    sim = flat @ flat.t()
    n = sim.shape[0]
    return float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1)))


def layer_from_config(config, checkpoint, name):
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope, init_default_scope
    from mmengine.runner import load_checkpoint

    import mmdynconv  # noqa: F401
    from mmdynconv.layers import FDConv
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        model = MODELS.build(cfg.model)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu')
    layers = {n: m for n, m in model.named_modules() if isinstance(m, FDConv) and m.dynamic}
    if not layers:
        raise SystemExit(f'{config}: the model has no dynamic FDConv layer')
    if name is None:
        name = next((n for n, m in layers.items() if m.kernel_size == 3), next(iter(layers)))
    if name not in layers:
        raise SystemExit(f'no dynamic FDConv layer {name!r}; available: {", ".join(list(layers)[:8])}, …')
    m = layers[name]
    return name, m.spectrum, m.out_channels, m.in_channels, m.kernel_size, m.kernel_num


def layer_from_checkpoint(path, name, kernel_num):
    state = torch.load(path, map_location='cpu', weights_only=True)
    state = state.get('state_dict', state)
    state = {k[len('backbone.'):] if k.startswith('backbone.') else k: v for k, v in state.items()}
    candidates = sorted({k.rsplit('.', 1)[0] for k in state if re.search(r'\.(spectrum|weight)$', k)})
    if name is None:
        name = next((c for c in candidates if c + '.spectrum' in state), None) or next(
            (c for c in candidates if state[c + '.weight'].dim() == 4 and state[c + '.weight'].shape[-1] == 3), None)
    if name is None or name not in candidates:
        raise SystemExit(f'{path}: no layer {name!r} with a spectrum or a 4-D conv weight')
    if name + '.spectrum' in state:
        spectrum = state[name + '.spectrum']
        co = state[f'{name}.ksm_global.out_head.weight'].shape[0]
        ci = state[f'{name}.ksm_global.in_head.weight'].shape[0]
        head = state.get(f'{name}.ksm_global.kernel_head.weight')
        n = head.shape[0] if head is not None else 1
        return name, spectrum, co, ci, spectrum.shape[0] // co, n
    weight = state[name + '.weight']
    if weight.dim() != 4:
        raise SystemExit(f'{path}: {name}.weight is not a conv weight')
    return name + ' (converted from a plain conv)', weight_to_spectrum(weight), weight.shape[0], weight.shape[1], \
        weight.shape[-1], kernel_num


def plot(path, title, fdconv, condconv, sims):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    n = fdconv.shape[0]
    cols = min(n, 16)
    rows = -(-n // cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(cols * 0.9, 2 * rows * 0.9 + 0.9), squeeze=False)
    for block, (label, responses) in enumerate((('FDConv bands', fdconv), ('CondConv split', condconv))):
        top = float(responses.max())
        for j in range(rows * cols):
            ax = axes[block * rows + j // cols][j % cols]
            ax.axis('off')
            if j < n:
                ax.imshow(responses[j].numpy(), cmap='viridis', vmin=0, vmax=top)
        axes[block * rows][0].set_title(f'{label}: mean cos sim {sims[block]:.3f}', loc='left', fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches='tight')
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', help='model config (mmdet/mmseg) containing FDConv layers')
    parser.add_argument('--checkpoint', help='checkpoint to load into the config, or to read the layer from')
    parser.add_argument('--layer', help='module name (default: the first dynamic 3×3 FDConv / 3×3 conv)')
    parser.add_argument('--in-channels', type=int, default=64)
    parser.add_argument('--out-channels', type=int, default=64)
    parser.add_argument('--kernel-size', type=int, default=3)
    parser.add_argument('--kernel-num', type=int, default=64)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default='fdconv_frequency.png')
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    if args.config:
        source = layer_from_config(args.config, args.checkpoint, args.layer)
    elif args.checkpoint:
        source = layer_from_checkpoint(args.checkpoint, args.layer, args.kernel_num)
    else:
        from mmdynconv.layers import FDConv
        layer = FDConv(args.in_channels, args.out_channels, args.kernel_size, padding=args.kernel_size // 2,
                       kernel_num=args.kernel_num)
        if not layer.dynamic:
            raise SystemExit('that shape falls back to a plain conv; pick min(Ci, Co) > 16 and k in (1, 3)')
        source = ('random initialisation', layer.spectrum, args.out_channels, args.in_channels, args.kernel_size,
                  args.kernel_num)
    name, spectrum, co, ci, k, n = source
    if n < 2:
        raise SystemExit('the layer has kernel_num = 1: nothing to compare')
    fd = band_kernels(spectrum, co, ci, k, n)
    cc = condconv_split(spectrum_to_weight(spectrum, co, ci, k), n)
    responses = [spatial_response(x) for x in (fd, cc)]
    spatial = [mean_pairwise_cosine(r) for r in responses]
    tiled = [mean_pairwise_cosine(tiled_response(x)) for x in (fd, cc)]
    print(f'layer: {name}  (Co={co}, Ci={ci}, k={k}, n={n})')
    print('mean pairwise cosine similarity of the candidate kernels\' magnitude responses')
    for label, (fd_sim, cc_sim) in ((f'spatial (k×k filters, RMS |DFT| {RESPONSE_SIZE}×{RESPONSE_SIZE})', spatial),
                                    ('tiled (FDW parameter domain)', tiled)):
        print(f'  {label:<42} FDConv {fd_sim:.3f}   CondConv split {cc_sim:.3f}')
    plot(args.out, f'{name}: spatial frequency responses of {n} candidate kernels', *responses, spatial)
    print(f'wrote {args.out}')
    return dict(spatial=spatial, tiled=tiled)


if __name__ == '__main__':
    main()
