"""The inference benchmark's measurement (tools/benchmark_inference.py): every column measured, both clocks."""
import pytest
import torch
from tool_runner import run_tool
from torch_support import needs_export

from mmdynconv.deploy.benchmark import measure_module
from mmdynconv.layers import FDConv

pytestmark = needs_export


@pytest.mark.parametrize('clock', ['wall', 'cpu'])
def test_measure_module_times_every_path(tmp_path, clock):
    torch.manual_seed(0)
    result = measure_module(FDConv(8, 8, 3, padding=1, kernel_num=4), (torch.randn(1, 8, 9, 7),),
                            str(tmp_path / 'fdconv.onnx'), repeat=1, budget_s=0, clock=clock)
    assert set(result) == {'train_ms', 'eval_ms', 'inference_ms', 'onnxruntime_ms'}
    assert all(v > 0 for v in result.values()) and (tmp_path / 'fdconv.onnx').exists()


def test_tool_rejects_a_bad_clock(tmp_path):
    proc = run_tool('tools/benchmark_inference.py', '--clock', 'sundial', '--out', str(tmp_path), check=False)
    assert proc.returncode == 2 and '--clock' in proc.stdout
