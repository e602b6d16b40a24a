"""DDF-Up against the other FPN upsamplers (×2, 256 channels) at the top-down steps of Faster R-CNN's FPN.

Methods: ``ddf_up`` ('ddf_up', automatic backend: Triton on CUDA, the reference on CPU), ``ddf_up_reference``
(forced onto the reference; CUDA only, on CPU it is ``ddf_up``), ``nearest`` / ``bilinear`` (``nn.Upsample``),
``deconv`` (ConvTranspose2d, kernel 4, stride 2, padding 1), ``pixel_shuffle`` (3×3 conv C → 4C + pixel shuffle, as
mmcv's ``PixelShufflePack``), ``carafe`` (mmcv's CARAFE, CUDA only), and every other upsampler whose layer
declaration names this benchmark (``carafe_torch``, ``dysample``, ``fade``: built from mmengine's ``MODELS`` by name
with its ``benchmark_args``; a guided one, ``takes_guidance``, also gets a (B, C, 2H, 2W) guidance with gradients).
Full levels: the P5→P4, P4→P3, P3→P2 inputs at an 800×1216 image (25×38, 50×76, 100×152), batch 2 (CUDA) or 1
(CPU).
"""
import torch
from torch import nn

from ..layers.declarations import declared_with
from .common import DTYPES, build_registered, module_case, registered, shape_label
from .harness import Case
from .registry import Benchmark

__all__ = ['SMALL', 'DECLARED', 'REGISTERED', 'METHODS', 'PixelShuffleUp', 'plain_upsampler', 'skip_reason', 'builder',
           'cases', 'BENCHMARK']

LEVELS = ((256, 25, 38), (256, 50, 76), (256, 100, 152))
SMALL = ((1, 16, 6, 7),)
DECLARED = {d.name: dict(type=d.name, **d.benchmark_args) for d in declared_with(kind='upsampler', benchmark='ddf_up')
            if d.name != 'ddf_up'}
REGISTERED = {'ddf_up': dict(type='ddf_up'), 'ddf_up_reference': dict(type='ddf_up', backend='reference'),
              'carafe': dict(type='carafe', up_kernel=5), **DECLARED}
METHODS = ('ddf_up', 'ddf_up_reference', 'nearest', 'bilinear', 'deconv', 'pixel_shuffle', 'carafe') + tuple(DECLARED)


class PixelShuffleUp(nn.Module):
    """3×3 conv C → C·s² then pixel shuffle: (B, C, H, W) -> (B, C, s·H, s·W)."""

    def __init__(self, channels, scale=2, kernel_size=3):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * scale * scale, kernel_size, padding=kernel_size // 2)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x):
        return self.shuffle(self.conv(x))


def plain_upsampler(method, channels):
    if method in ('nearest', 'bilinear'):
        return nn.Upsample(scale_factor=2, mode=method, **({} if method == 'nearest' else dict(align_corners=False)))
    if method == 'deconv':
        return nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1)
    return PixelShuffleUp(channels)


def skip_reason(method, settings):
    if method == 'ddf_up_reference' and not settings.cuda:
        return 'same as ddf_up on CPU'
    if method == 'carafe':
        if not settings.cuda:
            return 'mmcv CARAFE has no CPU kernel'
        try:
            import mmcv.ops  # noqa: F401  (registers 'carafe')
        except ImportError as err:
            return f'mmcv.ops unavailable ({err})'
    return registered(REGISTERED[method]['type']) if method in REGISTERED else ''


def builder(method, shape, dtype, device):
    def build():
        channels = shape[1]
        if method in REGISTERED:
            module = build_registered(dict(REGISTERED[method], channels=channels, scale_factor=2), device, dtype)
        else:
            module = plain_upsampler(method, channels).to(device=device, dtype=dtype)
        x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
        if getattr(module, 'takes_guidance', False):   # a guided upsampler: the finer lateral, (B, C, 2H, 2W)
            b, c, h, w = shape
            g = torch.randn(b, c, 2 * h, 2 * w, device=device, dtype=dtype, requires_grad=True)
            return (lambda: module(x, g)), [x, g] + [p for p in module.parameters() if p.requires_grad]
        return module_case(module, x)
    return build


def cases(settings):
    batch = 2 if settings.cuda else 1
    levels = SMALL if settings.shapes == 'small' else [(batch, *level) for level in LEVELS]
    for dtype_name in settings.dtypes:
        for shape in levels:
            for method in METHODS:
                yield Case(f'{shape_label(shape)} {dtype_name}', method,
                           builder(method, shape, DTYPES[dtype_name], settings.device),
                           skip=skip_reason(method, settings), params=dict(input=shape_label(shape), dtype=dtype_name))


BENCHMARK = Benchmark(
    name='ddf_up', title='DDF-Up and other ×2 upsamplers', cases=cases, baselines=('nearest', 'carafe', 'carafe_torch'),
    description='Forward, forward+backward (gradients of the input and the parameters) and peak memory of each '
                'upsampler at the FPN top-down steps, with ratios to nearest and to CARAFE (mmcv, CUDA) or its '
                'PyTorch version `carafe_torch` where measured.')
