"""python -m mmdynconv.utils.collect_env: a true account of the environment and of each op's backend."""
import subprocess
import sys

import torch

from mmdynconv.ops import backend as backend_module
from mmdynconv.utils import collect_env as collect_env_module


def test_command_prints_the_versions_and_every_op():
    out = subprocess.run([sys.executable, '-m', 'mmdynconv.utils.collect_env'], capture_output=True, text=True,
                         env={'PATH': '/usr/bin:/bin'}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(': ', 1) for line in out.stdout.splitlines())
    assert lines['torch'].startswith(f'{torch.__version__} (CUDA build')
    assert lines['triton'].startswith(str(backend_module.TRITON_VERSION))
    assert lines['TRITON_INTERPRET'] == 'off' and lines['MMDYNCONV_BACKEND'] == 'unset (auto)'
    for op, has_kernels in collect_env_module.OPS.items():
        assert lines[f'{op} on cpu'].startswith('reference: ')
        expected = 'triton' if has_kernels and backend_module.triton_available() else 'reference'
        assert lines[f'{op} on cuda'].startswith(f'{expected}: '), lines[f'{op} on cuda']


def test_an_old_triton_is_reported_with_the_reason(monkeypatch):
    monkeypatch.delenv(backend_module.ENV_VAR, raising=False)
    monkeypatch.setattr(backend_module, '_TRITON_IMPORT_ERROR', None)
    monkeypatch.setattr(backend_module, 'TRITON_VERSION', '2.2.0')
    env = collect_env_module.collect_env()
    assert env['triton'] == '2.2.0 (kernels need >= 3.0)'
    assert env['ddf on cuda'].startswith("reference: triton 2.2.0 is older than the kernels' minimum 3.0")
    monkeypatch.setenv(backend_module.ENV_VAR, 'reference')
    assert collect_env_module.collect_env()['ddf on cuda'] == 'reference: forced by MMDYNCONV_BACKEND=reference'
