"""The DDF forward's achieved memory bandwidth as a fraction of the device's copy bandwidth, measured in one run.

``copy``: ``dst.copy_(src)`` of a large tensor (1 GiB on CUDA, 256 MiB on CPU; 4 MiB at the small shapes),
bytes = 2 × its size (read + write). ``ddf_triton`` / ``ddf_reference``: the forward of :func:`mmdynconv.ops.ddf`
(no grad), bytes = the least any implementation must move: read x, fc, fs once and write the output once. GB/s =
bytes / median forward time; ``of copy`` = that divided by the copy's GB/s. Forward only (no backward rows).
"""
import torch

from ..ops import ddf
from .cases_ddf import ddf_inputs
from .common import DTYPES, shape_label, triton_skip
from .harness import Case
from .registry import Benchmark

__all__ = ['FULL', 'SMALL', 'copy_case', 'ddf_case', 'cases', 'fraction_of_copy', 'BENCHMARK']

FULL = ((2, 256, 200, 304), (32, 64, 56, 56), (32, 256, 14, 14))
SMALL = ((1, 8, 16, 16),)
COPY_BYTES = {'cuda': 2 ** 30, 'cpu': 2 ** 28, 'small': 2 ** 22}


def copy_case(settings):
    size = COPY_BYTES['small' if settings.shapes == 'small' else settings.device]

    def build():
        src = torch.empty(size // 4, device=settings.device).uniform_()
        dst = torch.empty_like(src)
        return (lambda: dst.copy_(src)), []
    return Case('copy', 'copy', build, backward=False, bytes_moved=2 * size,
                params=dict(shape=f'{size / 2 ** 20:.0f} MiB', k='', dtype='float32'))


def ddf_case(method, shape, k, dtype_name, settings):
    dtype = DTYPES[dtype_name]
    B, C, H, W = shape
    size = torch.finfo(dtype).bits // 8
    moved = size * (2 * B * C * H * W + B * C * k * k + B * k * k * H * W)  # x + out, fc, fs

    def build():
        x, fc, fs = ddf_inputs(shape, k, dtype, settings.device)
        backend = 'triton' if method == 'ddf_triton' else 'reference'
        return (lambda: ddf(x, fc, fs, k, backend=backend)), []
    skip = triton_skip(settings) if method == 'ddf_triton' else ''
    return Case(f'{shape_label(shape)} k{k} {dtype_name}', method, build, skip=skip, backward=False,
                bytes_moved=moved, params=dict(shape=shape_label(shape), k=k, dtype=dtype_name))


def cases(settings):
    yield copy_case(settings)
    for dtype_name in settings.dtypes:
        for shape in SMALL if settings.shapes == 'small' else FULL:
            for method in ('ddf_triton', 'ddf_reference'):
                yield ddf_case(method, shape, 3, dtype_name, settings)


def fraction_of_copy(rows):
    """Add ``gb_per_s/copy``: each row's GB/s over the copy row's."""
    copy = next((r['gb_per_s'] for r in rows if r['method'] == 'copy' and 'gb_per_s' in r), None)
    for row in rows:
        if copy and 'gb_per_s' in row:
            row['gb_per_s/copy'] = row['gb_per_s'] / copy


BENCHMARK = Benchmark(
    name='bandwidth', title='DDF forward bandwidth', cases=cases, finish=fraction_of_copy,
    description='Achieved memory bandwidth of the DDF forward (k = 3, one head, stride 1; least bytes moved: x, fc, '
                'fs read once, the output written once) against a large tensor copy measured in the same run. '
                'The op is memory-bound, so the fraction of copy bandwidth is its efficiency.')
