"""Inference benchmark behind ``tools/benchmark_inference.py``: per layer and for a demo detector, the eager forward
in training mode, in eval mode, with FDConv's inference mode, and the exported ONNX file in ONNX Runtime (CPU), all
timed in one process with the shared harness's :func:`~mmdynconv.benchmark.harness.time_ms` (median of runs)."""
import functools
import os.path as osp

import torch

from ..benchmark.harness import time_ms
from ..layers import DDFConv, DDFUpsample, FDConv
from ..layers.fdconv_inference import fdconv_inference_mode
from .export import export_onnx
from .tensor_forward import TensorForward, build_model

__all__ = ['LAYERS', 'DETECTOR', 'measure_module', 'run']

LAYERS = {  # name: (layer factory, input shape)
    'DDF 64ch k3, 32×32': (lambda: DDFConv(64, 64, 3), (1, 64, 32, 32)),
    'DDF-Up ×2 64ch, 16×16→32×32': (lambda: DDFUpsample(64, 2, 3), (1, 64, 16, 16)),
    'FDConv 3×3 64→64 n=64 (FBM), 32×32': (lambda: FDConv(64, 64, 3, padding=1), (1, 64, 32, 32)),
    'FDConv 3×3 256→256 n=64 (FBM), 8×8': (lambda: FDConv(256, 256, 3, padding=1), (1, 256, 8, 8)),
    'FDConv 1×1 64→256 n=64, 16×16': (lambda: FDConv(64, 256, 1), (1, 64, 16, 16)),
}
DETECTOR = 'configs/demo/faster-rcnn_tiny-r50-fdconv_fpn_shapes.py'


def _onnx_session(path, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def measure_module(module, inputs, onnx_path, threads=1, warmup=1, repeat=10, budget_s=1.0, clock='wall'):
    """Median ms of: eager forward in train mode, in eval mode, in FDConv inference mode (eval), ONNX Runtime;
    the timing arguments are the harness's ``time_ms`` ones (``clock='cpu'``: process CPU time, ONNX Runtime's
    threads included)."""
    timing = dict(warmup=warmup, repeat=repeat, budget_s=budget_s, clock=clock)

    def forward():
        with torch.no_grad():
            module(*inputs)

    result = {}
    module.train()
    result['train_ms'] = time_ms(forward, 'cpu', **timing)
    module.eval()
    result['eval_ms'] = time_ms(forward, 'cpu', **timing)
    module.apply(fdconv_inference_mode)
    result['inference_ms'] = time_ms(forward, 'cpu', **timing)
    module.apply(functools.partial(fdconv_inference_mode, enabled=False))
    export_onnx(module, inputs, onnx_path)
    session = _onnx_session(onnx_path, threads)
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)}
    result['onnxruntime_ms'] = time_ms(lambda: session.run(None, feeds), 'cpu', **timing)
    return result


def run(out_dir, detector=DETECTOR, detector_shape=(128, 128), threads=None, log=print, **timing):
    """Measure every layer of :data:`LAYERS` and the demo detector with ``threads`` threads for PyTorch and ONNX
    Runtime (None: torch's default) and the harness's ``timing`` arguments; returns the markdown table."""
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    cases = [(name, make, (shape,)) for name, (make, shape) in LAYERS.items()]
    if detector:
        cases.append((f'demo detector {osp.basename(detector)} (backbone+FPN+RPN head), {detector_shape[0]}×'
                      f'{detector_shape[1]}', lambda: TensorForward(build_model(detector)[0]),
                      ((1, 3) + tuple(detector_shape),)))
    for i, (name, make, shapes) in enumerate(cases):
        torch.manual_seed(0)
        module = make()
        inputs = tuple(torch.randn(s) for s in shapes)
        result = measure_module(module, inputs, osp.join(out_dir, f'case{i}.onnx'), threads, **timing)
        rows.append((name, result))
        log(f'{name}: ' + ', '.join(f'{k} {v:.2f}' for k, v in result.items()))
    head = ('| case | train-mode eager ms | eval eager ms | inference mode ms | ONNX Runtime ms | train / inference '
            '| train / ORT | eval / ORT |')
    lines = [head, '|---|---:|---:|---:|---:|---:|---:|---:|']
    for name, r in rows:
        lines.append(f'| {name} | {r["train_ms"]:.2f} | {r["eval_ms"]:.2f} | {r["inference_ms"]:.2f} | '
                     f'{r["onnxruntime_ms"]:.2f} | {r["train_ms"] / r["inference_ms"]:.2f} | '
                     f'{r["train_ms"] / r["onnxruntime_ms"]:.2f} | {r["eval_ms"] / r["onnxruntime_ms"]:.2f} |')
    lines.append(f'\nCPU, {threads} thread(s) for PyTorch and ONNX Runtime, batch 1, fp32, forward only (no_grad); '
                 f'median of up to {timing.get("repeat", 10)} runs, {timing.get("clock", "wall")} clock. Inference '
                 f'mode changes FDConv layers only.')
    return '\n'.join(lines) + '\n'
