"""resolve_backend for an op without Triton kernels (OP_BACKENDS = ('reference',)); the resolver's other cases are
tested with ddf in test_ddf_api.py."""
import pytest
import torch

from mmdynconv.ops.backend import BACKENDS, ENV_VAR, resolve_backend

REFERENCE_ONLY = ('reference',)
CPU, CUDA = torch.device('cpu'), torch.device('cuda')


@pytest.mark.parametrize('env', [None, 'auto', 'reference', 'triton'])
def test_op_without_kernels_runs_its_reference(monkeypatch, env):
    """Automatic choice, and MMDYNCONV_BACKEND forces Triton only where an op has it."""
    if env is None:
        monkeypatch.delenv(ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(ENV_VAR, env)
    for device in (CPU, CUDA):
        assert resolve_backend(None, device, 'op', REFERENCE_ONLY) == 'reference'
        assert resolve_backend('reference', device, 'op', REFERENCE_ONLY) == 'reference'


def test_op_without_kernels_refuses_triton_naming_the_values(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(ValueError, match=r"^op: backend must be None or 'reference' \(op has no Triton kernel\), "
                                         r"got 'triton'$"):
        resolve_backend('triton', CUDA, 'op', REFERENCE_ONLY)
    with pytest.raises(ValueError, match=r"^op: backend must be None or 'reference', got 'cuda'$"):
        resolve_backend('cuda', CPU, 'op', REFERENCE_ONLY)
    with pytest.raises(TypeError, match=r"^op: backend must be None or 'reference', got int$"):
        resolve_backend(1, CPU, 'op', REFERENCE_ONLY)


def test_bad_environment_value_is_refused_for_every_op(monkeypatch):
    monkeypatch.setenv(ENV_VAR, 'fast')
    for backends in (BACKENDS, REFERENCE_ONLY):
        with pytest.raises(ValueError, match=f'{ENV_VAR} must be'):
            resolve_backend(None, CPU, 'op', backends)


def test_default_backends_are_all_of_them(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(ValueError, match=r"^op: backend must be None, 'reference' or 'triton', got 'x'$"):
        resolve_backend('x', CPU, 'op')
