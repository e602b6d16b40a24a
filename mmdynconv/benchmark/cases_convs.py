"""FDConv against a plain conv, its straightforward oracle and the other dynamic convolutions, same shapes, same run.

Methods: ``plain`` (``nn.Conv2d``), ``fdconv_oracle`` (FDConv in mode ``'export'``: docs/fdconv.md written
straightforwardly, the oracle), ``fdconv`` (``FDConv.forward``, the lean path with its automatic backend: the fused
Triton kernels on CUDA), ``fdconv_torch`` (CUDA only: the lean path with ``MMDYNCONV_BACKEND=reference``, i.e.
without the Triton kernels) and every other conv whose layer declaration names this benchmark (CondConv, DYConv,
ODConv: built from mmengine's ``MODELS`` with the conv-layer signature and its ``benchmark_args``). Every layer has
kernel_num / experts at its default; FDConv 64 bands. Full shapes: ResNet-50 bottleneck conv2 (3×3) and conv3 (1×1)
of each stage at a 224×224 input, batch 8, and two 3×3 layers at FPN resolutions of an 800×1216 input, batch 16; on
CPU the inputs are 112×112 and 400×608 with batches 2 and 4.
"""
import torch
from torch import nn

from ..layers.declarations import declared_with
from .common import build_registered, module_case, registered
from .harness import Case
from .registry import Benchmark

__all__ = ['SMALL_SHAPES', 'DECLARED', 'METHODS', 'shapes', 'builder', 'skip_reason', 'cases', 'BENCHMARK']

# name, Ci, Co, k, H, W, batch
CUDA_SHAPES = [
    ('r50-s1-conv2', 64, 64, 3, 56, 56, 8), ('r50-s1-conv3', 64, 256, 1, 56, 56, 8),
    ('r50-s2-conv2', 128, 128, 3, 28, 28, 8), ('r50-s2-conv3', 128, 512, 1, 28, 28, 8),
    ('r50-s3-conv2', 256, 256, 3, 14, 14, 8), ('r50-s3-conv3', 256, 1024, 1, 14, 14, 8),
    ('r50-s4-conv2', 512, 512, 3, 7, 7, 8), ('r50-s4-conv3', 512, 2048, 1, 7, 7, 8),
    ('fpn-s2-conv2', 128, 128, 3, 100, 152, 16), ('fpn-s3-conv2', 256, 256, 3, 50, 76, 16),
]
CPU_SHAPES = [
    ('r50-s1-conv2', 64, 64, 3, 28, 28, 2), ('r50-s1-conv3', 64, 256, 1, 28, 28, 2),
    ('r50-s2-conv2', 128, 128, 3, 14, 14, 2), ('r50-s2-conv3', 128, 512, 1, 14, 14, 2),
    ('r50-s3-conv2', 256, 256, 3, 7, 7, 2), ('r50-s3-conv3', 256, 1024, 1, 7, 7, 2),
    ('r50-s4-conv2', 512, 512, 3, 4, 4, 2), ('r50-s4-conv3', 512, 2048, 1, 4, 4, 2),
    ('fpn-s2-conv2', 128, 128, 3, 50, 76, 4), ('fpn-s3-conv2', 256, 256, 3, 25, 38, 4),
]
SMALL_SHAPES = [('tiny-3x3', 24, 32, 3, 10, 10, 2), ('tiny-1x1', 24, 32, 1, 6, 6, 2)]
SMALL_KERNEL_NUM = 8
DECLARED = {d.name: d for d in declared_with(kind='conv') if d.name != 'FDConv'}   # every other conv, by name
BASELINES = tuple(n for n, d in DECLARED.items() if d.benchmark == 'convs')
METHODS = ('plain', 'fdconv_oracle', 'fdconv', 'fdconv_torch') + BASELINES


def shapes(settings):
    if settings.shapes == 'small':
        return SMALL_SHAPES
    return CUDA_SHAPES if settings.cuda else CPU_SHAPES


def builder(method, shape, settings):
    _, ci, co, k, h, w, b = shape
    device = settings.device

    def build():
        torch.manual_seed(0)
        conv_args = dict(in_channels=ci, out_channels=co, kernel_size=k, padding=k // 2, bias=False)
        x = torch.randn(b, ci, h, w, device=device, requires_grad=True)
        if method == 'plain':
            return module_case(nn.Conv2d(**conv_args).to(device), x)
        if method in DECLARED:
            cfg = dict(type=method, **conv_args, **DECLARED[method].benchmark_args)
            return module_case(build_registered(cfg, device, torch.float32), x)
        from ..layers import FDConv
        extra = dict(kernel_num=SMALL_KERNEL_NUM) if settings.shapes == 'small' else {}
        backend = 'reference' if method == 'fdconv_torch' else None
        layer = FDConv(**conv_args, **extra, backend=backend).to(device).train()
        layer.mode = 'export' if method == 'fdconv_oracle' else 'default'
        return module_case(layer, x)
    return build


def skip_reason(method, settings):
    if method == 'fdconv_torch' and not settings.cuda:
        return 'same as fdconv on CPU'
    if method in DECLARED or method.startswith('fdconv'):
        return registered(method if method in DECLARED else 'FDConv')
    return ''


def cases(settings):
    notes = {m: skip_reason(m, settings) for m in METHODS}
    for dtype_name in settings.dtypes:
        if dtype_name != 'float32':
            print(f'convs: measured in float32 only (skipping {dtype_name})')
            continue
        for shape in shapes(settings):
            name, ci, co, k, h, w, b = shape
            params = dict(layer=name, B=b, Ci=ci, Co=co, k=k, HW=f'{h}×{w}')
            for method in METHODS:
                yield Case(name, method, builder(method, shape, settings), skip=notes[method], params=params)


BENCHMARK = Benchmark(
    name='convs', title='FDConv and other dynamic convolutions', cases=cases, baselines=('plain', 'fdconv_oracle'),
    description='Forward+backward time (gradients of the input and all parameters) and peak memory of FDConv (lean '
                'path and its oracle) beside a plain conv of the same shape and the CondConv / DY-Conv / ODConv '
                'baselines, float32, training mode. Ratios to the plain conv and to the oracle.')
