"""DDF op against a depthwise conv, a dense conv and the unfold formulation (docs/ddf.md), same shapes, same run.

Methods: ``ddf_triton`` / ``ddf_reference`` (:func:`mmdynconv.ops.ddf` with that backend), ``unfold`` (F.unfold and
the materialised (B, C, k², H·W) kernel), ``depthwise`` (F.conv2d, groups=C: the cost DDF is designed to match) and
``dense`` (F.conv2d, C → C). Full shapes: the ResNet-50 stage shapes 64×56², 128×28², 256×14², 512×7² at batch 32
(CUDA) or 2 (CPU) and the FPN level 256×200×304 at batch 2 (CUDA) or 1 (CPU), k ∈ {3, 5, 7}.
"""
import torch
import torch.nn.functional as F

from ..ops import ddf
from .common import DTYPES, shape_label, triton_skip
from .harness import Case
from .registry import Benchmark

__all__ = ['FPN', 'SMALL', 'METHODS', 'unfold_ddf', 'shapes', 'ddf_inputs', 'builder', 'skip_reason', 'cases',
           'BENCHMARK']

STAGES = ((64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7))
FPN = (256, 200, 304)
SMALL = ((1, 8, 12, 10), (1, 16, 7, 9))
METHODS = ('ddf_triton', 'ddf_reference', 'unfold', 'depthwise', 'dense')
MAX_UNFOLD_GIB = {'cuda': 40.0, 'cpu': 6.0}       # skip the unfold baseline above this much buffer memory
MAX_DENSE_GFLOP = {'cuda': float('inf'), 'cpu': 60.0}


def unfold_ddf(x, fc, fs, k):
    """DDF (one head, stride 1) by unfolding x and materialising the combined kernel: (B, C, H, W)."""
    B, C, H, W = x.shape
    cols = F.unfold(x, k, padding=k // 2).view(B, C, k * k, H, W)
    return (cols * (fs.unsqueeze(1) * fc.reshape(B, C, k * k, 1, 1))).sum(2)


def shapes(settings):
    if settings.shapes == 'small':
        return SMALL, (3,)
    batch, fpn_batch = (32, 2) if settings.cuda else (2, 1)
    return [(batch, *s) for s in STAGES] + [(fpn_batch, *FPN)], (3, 5, 7)


def ddf_inputs(shape, k, dtype, device):
    """x (B, C, H, W), fc (B, C, k, k), fs (B, k², H, W) with one head, stride 1."""
    B, C, H, W = shape
    x = torch.randn(shape, device=device, dtype=dtype)
    fc = torch.randn((B, C, k, k), device=device, dtype=dtype) / k
    fs = torch.randn((B, k * k, H, W), device=device, dtype=dtype) / k
    return x, fc, fs


def builder(method, shape, k, dtype, device):
    def build():
        B, C, H, W = shape
        if method in ('depthwise', 'dense'):
            groups = C if method == 'depthwise' else 1
            x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
            w = (torch.randn((C, C // groups, k, k), device=device, dtype=dtype) / k).requires_grad_()
            return (lambda: F.conv2d(x, w, padding=k // 2, groups=groups)), [x, w]
        x, fc, fs = (t.requires_grad_() for t in ddf_inputs(shape, k, dtype, device))
        if method == 'unfold':
            return (lambda: unfold_ddf(x, fc, fs, k)), [x, fc, fs]
        backend = 'triton' if method == 'ddf_triton' else 'reference'
        return (lambda: ddf(x, fc, fs, k, backend=backend)), [x, fc, fs]
    return build


def skip_reason(method, shape, k, dtype, settings):
    B, C, H, W = shape
    if method == 'ddf_triton':
        return triton_skip(settings)
    size = torch.finfo(dtype).bits // 8
    limit = MAX_UNFOLD_GIB[settings.device]
    if method == 'unfold' and 4 * B * C * k * k * H * W * size > limit * 2 ** 30:
        return f'unfold buffers > {limit} GiB'
    limit = MAX_DENSE_GFLOP[settings.device]
    if method == 'dense' and 6 * B * C * C * k * k * H * W / 1e9 > limit:
        return f'> {limit} GFLOP'
    return ''


def cases(settings):
    shape_list, kernel_sizes = shapes(settings)
    for dtype_name in settings.dtypes:
        dtype = DTYPES[dtype_name]
        for shape in shape_list:
            for k in kernel_sizes:
                group = f'{shape_label(shape)} k{k} {dtype_name}'
                for method in METHODS:
                    yield Case(group, method, builder(method, shape, k, dtype, settings.device),
                               skip=skip_reason(method, shape, k, dtype, settings),
                               params=dict(shape=shape_label(shape), k=k, dtype=dtype_name))


BENCHMARK = Benchmark(
    name='ddf', title='DDF op', cases=cases, baselines=('depthwise', 'unfold'),
    description='`mmdynconv.ops.ddf` (Triton and reference backends) against an unfold formulation, a depthwise and '
                'a dense k×k conv of the same shape, all in one run (one head, stride 1, gradients of x and both '
                'filters). Ratios < 1 mean faster / smaller than the baseline. Peak: MiB of tensors allocated '
                'during forward+backward beyond the inputs.')
