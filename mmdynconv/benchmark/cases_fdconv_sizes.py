"""FDConv, the other dynamic convs and DDF at the feature-map sizes users train at, against a plain conv of the same
shape, same run.

Shape sets (the 3×3 convs of ResNet-50's four stages, stride 1, where FBM runs):

- ``det``: mmdet's 800×1216 input, batch 2: 64→64 at 200×304, 128→128 at 100×152, 256→256 at 50×76,
  512→512 at 25×38;
- ``seg``: mmseg's UPerNet 512×512 input, batch 4 (strides 1, 2, 2, 2, no dilation): 64→64 at 128×128,
  128→128 at 64×64, 256→256 at 32×32, 512→512 at 16×16.

Methods: ``plain`` (``nn.Conv2d``), ``fdconv`` (``FDConv.forward``, default options, 64 bands, training mode, the
automatic backend and FBM path), its two parts timed apart — ``fdconv_no_fbm`` (the same layer with
``use_fbm=False``: KSM, kernel assembly and the per-sample conv) and ``fbm`` (the FrequencyBandModulation module alone:
its 3×3 attention conv and ``frequency_band_mix``) — on CUDA ``fdconv_torch`` (``backend='reference'``, no Triton
kernels), ``fdconv_release`` (the authors' released module with the same options, 64 bands, when the environment
variable ``MMDYNCONV_FDCONV_RELEASE`` names its ``FDConv.py``; skipped otherwise), and every other declared conv (the
``convs`` benchmark's baselines, and DDF), built from the registry with its defaults. The FDConv oracle is not run at
these sizes. The FBM path can be forced with ``MMDYNCONV_FBM_PATH=gemm|fft``.
"""
import contextlib
import io
import os

import torch

from ..layers.fdconv_release import RELEASE_ENV, import_fdconv_release
from . import cases_convs
from .common import module_case
from .harness import Case
from .registry import Benchmark

__all__ = ['SMALL_SHAPES', 'METHODS', 'PARTS', 'shapes', 'part_builder', 'cases', 'BENCHMARK']

# set, name, Ci, Co, k, H, W, batch
FULL_SHAPES = [
    ('det', 'r50-s1-conv2', 64, 64, 3, 200, 304, 2), ('det', 'r50-s2-conv2', 128, 128, 3, 100, 152, 2),
    ('det', 'r50-s3-conv2', 256, 256, 3, 50, 76, 2), ('det', 'r50-s4-conv2', 512, 512, 3, 25, 38, 2),
    ('seg', 'r50-s1-conv2', 64, 64, 3, 128, 128, 4), ('seg', 'r50-s2-conv2', 128, 128, 3, 64, 64, 4),
    ('seg', 'r50-s3-conv2', 256, 256, 3, 32, 32, 4), ('seg', 'r50-s4-conv2', 512, 512, 3, 16, 16, 4),
]
SMALL_SHAPES = [('det', 'tiny-3x3', 16, 16, 3, 20, 30, 2), ('seg', 'tiny-3x3', 16, 16, 3, 16, 16, 2)]
METHODS = ('plain', 'fdconv', 'fdconv_no_fbm', 'fbm', 'fdconv_release', 'fdconv_torch') + tuple(cases_convs.DECLARED)
PARTS = ('fdconv_no_fbm', 'fbm', 'fdconv_release')   # built here (the other methods by the convs benchmark's builder)


def part_builder(method, shape, settings):
    """``fdconv_no_fbm`` or ``fbm`` at ``shape`` (name, Ci, Co, k, H, W, batch)."""
    _, ci, co, k, h, w, b = shape
    device = settings.device

    def build():
        from ..layers import FDConv
        from ..layers.frequency_band_modulation import FrequencyBandModulation
        torch.manual_seed(0)
        x = torch.randn(b, ci, h, w, device=device, requires_grad=True)
        if method == 'fbm':
            return module_case(FrequencyBandModulation(ci).to(device).train(), x)
        if method == 'fdconv_release':
            release = import_fdconv_release(os.environ[RELEASE_ENV]).FDConv
            with contextlib.redirect_stdout(io.StringIO()):   # it prints its kernel_num
                layer = release(ci, co, k, padding=k // 2, bias=False, kernel_num=64)
            return module_case(layer.to(device).train(), x)
        extra = dict(kernel_num=cases_convs.SMALL_KERNEL_NUM) if settings.shapes == 'small' else {}
        layer = FDConv(ci, co, k, padding=k // 2, bias=False, use_fbm=False, **extra).to(device).train()
        return module_case(layer, x)
    return build


def shapes(settings):
    return SMALL_SHAPES if settings.shapes == 'small' else FULL_SHAPES


def cases(settings):
    # the convs benchmark's builder and skip reasons: the same layers, options and inputs at these shapes
    notes = {m: cases_convs.skip_reason('fdconv' if m in PARTS else m, settings) for m in METHODS}
    if not notes['fdconv_release'] and not os.environ.get(RELEASE_ENV):
        notes['fdconv_release'] = f"set {RELEASE_ENV} to the release's FDConv.py to measure it"
    if notes['fdconv_release'] == '' and settings.shapes == 'small':
        notes['fdconv_release'] = 'full shapes only'
    for dtype_name in settings.dtypes:
        if dtype_name != 'float32':
            print(f'fdconv_sizes: measured in float32 only (skipping {dtype_name})')
            continue
        for shape in shapes(settings):
            shape_set, name, ci, co, k, h, w, b = shape
            params = dict(set=shape_set, layer=name, B=b, Ci=ci, Co=co, k=k, HW=f'{h}×{w}')
            for method in METHODS:
                build = (part_builder if method in PARTS else cases_convs.builder)(method, shape[1:], settings)
                yield Case(f'{shape_set}-{name}', method, build, skip=notes[method], params=params)


BENCHMARK = Benchmark(
    name='fdconv_sizes', title='FDConv and the other dynamic convs at training resolutions', cases=cases,
    baselines=('plain', 'fdconv_release'),   # the release's columns only where it was measured
    description='Forward+backward time (gradients of the input and all parameters) and peak memory of FDConv '
                '(default options, 64 bands, training mode, float32) and its two parts apart (`fdconv_no_fbm`: '
                'without FBM; `fbm`: the FBM module alone), the other dynamic convs and DDF (their '
                'defaults) beside a plain conv of the same shape at the '
                "3×3 convs of ResNet-50's stages: `det` under mmdet's 800×1216 input, batch 2; `seg` under a "
                '512×512 UPerNet input, batch 4. Ratios to the plain conv, and to the release where it was measured.')
