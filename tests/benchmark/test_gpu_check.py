"""tools/gpu_check.sh --cpu-pipeline: the GPU check's pipeline end to end on CPU (tiny shapes, Triton interpreter)."""
import csv
import os
import re
import subprocess
import sys

import pytest
from tool_runner import ROOT

from mmdynconv.ops.backend import triton_unusable_reason


@pytest.mark.slow
@pytest.mark.skipif(triton_unusable_reason() is not None, reason=f'gpu_check needs the Triton kernels: '
                    f'{triton_unusable_reason()}')
def test_cpu_pipeline_writes_the_report(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(['bash', 'tools/gpu_check.sh', '--cpu-pipeline', '--out', str(tmp_path)], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    report = (tmp_path / 'gpu_report.md').read_text()
    assert report.startswith('# GPU check report (cpu-pipeline)')
    assert '| kernel-tests |' in report and '| benchmarks |' in report
    passed = int(re.search(r'## Kernel tests\n\n(\d+) passed, 0 failed, 0 error', report).group(1))
    assert passed >= 2                                  # a couple of kernels through the interpreter
    assert 'of copy bandwidth' in report and 'ddf_triton forward' in report
    for title in ('### DDF op', '### DDF-Up', '### FDConv', '### DDF forward bandwidth'):
        assert title in report
    rows = list(csv.DictReader(open(tmp_path / 'gpu_report.csv')))
    assert {r['benchmark'] for r in rows} == {'ddf', 'ddf_up', 'convs', 'bandwidth', 'fdconv_sizes'}


def test_bad_argument_is_named():
    proc = subprocess.run(['bash', 'tools/gpu_check.sh', '--nope'], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown argument '--nope'" in proc.stderr


def test_refuses_an_environment_whose_triton_cannot_run_the_kernels(tmp_path):
    fake = tmp_path / 'fake'
    (fake / 'triton').mkdir(parents=True)
    (fake / 'triton' / '__init__.py').write_text("__version__ = '2.1.0'\n")
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(fake))
    proc = subprocess.run(['bash', 'tools/gpu_check.sh', '--cpu-pipeline', '--out', str(tmp_path / 'out')], cwd=ROOT,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert "triton 2.1.0 is older than the kernels' minimum 3.0" in proc.stdout
