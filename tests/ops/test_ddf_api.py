"""ddf's argument validation, backend switch, custom-op registration and torch.compile support."""
import ast
import importlib
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
import torch
from torch_support import needs_custom_ops

import mmdynconv
import mmdynconv.ops
from mmdynconv.ops import ENV_VAR, ddf, resolve_backend
from mmdynconv.ops import backend as backend_module

ddf_module = importlib.import_module('mmdynconv.ops.ddf')
HAS_TRITON = backend_module.triton_available()
TRITON_SKIP = str(backend_module.triton_unusable_reason())
DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'


def _args(**changes):
    """Valid ddf arguments (stride 2, two heads) with some replaced."""
    args = dict(x=torch.randn(2, 4, 7, 9), channel_filter=torch.randn(2, 4, 3, 3),
                spatial_filter=torch.randn(2, 18, 4, 5), kernel_size=3, stride=2, dilation=1, combine='mul',
                backend='reference')
    args.update(changes)
    return args


BAD_ARGUMENTS = [
    (dict(kernel_size=4), ValueError, 'kernel_size must be odd'),
    (dict(kernel_size=0), ValueError, 'kernel_size must be >= 1'),
    (dict(kernel_size=-3), ValueError, 'kernel_size must be >= 1'),
    (dict(kernel_size=3.0), TypeError, 'kernel_size must be an int'),
    (dict(kernel_size=True), TypeError, 'kernel_size must be an int'),
    (dict(stride=0), ValueError, 'stride must be >= 1'),
    (dict(dilation=0), ValueError, 'dilation must be >= 1'),
    (dict(channel_filter=torch.randn(2, 4, 5, 5)), ValueError, r'channel_filter must have shape \(B, C, k, k\)'),
    (dict(channel_filter=torch.randn(2, 3, 3, 3)), ValueError, r'channel_filter must have shape \(B, C, k, k\)'),
    (dict(spatial_filter=torch.randn(2, 10, 4, 5)), ValueError, r'spatial_filter must have shape \(B, G·k²'),
    (dict(spatial_filter=torch.randn(1, 18, 4, 5)), ValueError, r'spatial_filter must have shape \(B, G·k²'),
    (dict(spatial_filter=torch.randn(2, 27, 4, 5)), ValueError, 'the 3 heads of spatial_filter'),
    (dict(spatial_filter=torch.randn(2, 18, 7, 9)), ValueError, r'spatial_filter must have spatial size .* \(4, 5\)'),
    (dict(spatial_filter=torch.randn(2, 18, 3, 4)), ValueError, 'spatial_filter must have spatial size'),
    (dict(x=torch.randn(4, 7, 9)), ValueError, 'x must be 4-D'),
    (dict(x=torch.ones(2, 4, 7, 9, dtype=torch.int64)), TypeError, 'x must be float16, bfloat16, float32 or float64'),
    (dict(channel_filter=torch.ones(2, 4, 3, 3, dtype=torch.int32)), TypeError, 'channel_filter must be float16'),
    (dict(x=torch.randn(2, 4, 7, 9, dtype=torch.complex64)), TypeError, 'x must be float16'),
    (dict(spatial_filter=torch.randn(2, 18, 4, 5).half()), TypeError, "spatial_filter must have x's dtype"),
    (dict(channel_filter=torch.randn(2, 4, 3, 3, device='meta')), ValueError, "channel_filter must be on x's device"),
    (dict(x=[[1.0]]), TypeError, 'x must be a torch.Tensor'),
    (dict(combine='sum'), ValueError, r"combine must be one of \('mul', 'add'\)"),
    (dict(backend='cuda'), ValueError, "backend must be None, 'reference' or 'triton'"),
    (dict(backend=1), TypeError, "backend must be None, 'reference' or 'triton'"),
]


@pytest.mark.parametrize('changes,error,message', BAD_ARGUMENTS, ids=lambda v: str(v)[:40])
def test_bad_arguments_raise(changes, error, message):
    with pytest.raises(error, match=message):
        ddf(**_args(**changes))


def test_valid_arguments_and_output_size():
    assert ddf(**_args()).shape == (2, 4, 4, 5)


def test_automatic_backend(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_backend(None, torch.device('cpu'), 'op') == 'reference'
    assert resolve_backend(None, torch.device('cuda'), 'op') == ('triton' if HAS_TRITON else 'reference')
    monkeypatch.setattr(backend_module, '_TRITON_IMPORT_ERROR', ImportError('no triton'))
    assert resolve_backend(None, torch.device('cuda'), 'op') == 'reference'
    with pytest.raises(RuntimeError, match='failed to import'):
        resolve_backend('triton', torch.device('cuda'), 'op')


def test_old_triton_is_refused_with_the_version_and_the_fix(monkeypatch, caplog):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(backend_module, '_TRITON_IMPORT_ERROR', None)
    monkeypatch.setattr(backend_module, 'TRITON_VERSION', '2.1.0')
    monkeypatch.setattr(backend_module, '_told_reference', set())
    with caplog.at_level('WARNING', logger='mmdynconv'):
        assert resolve_backend(None, torch.device('cuda'), 'op') == 'reference'
        assert resolve_backend(None, torch.device('cuda'), 'op') == 'reference'
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "triton 2.1.0 is older than the kernels' minimum 3.0" in said[0], said
    with pytest.raises(RuntimeError, match=r'triton 2\.1\.0 is older .*pip install "torch>=2\.4"'):
        resolve_backend('triton', torch.device('cuda'), 'op')
    assert backend_module.explain_backend('cuda')[0] == 'reference'
    monkeypatch.setattr(backend_module, 'TRITON_VERSION', '3.0.0')
    assert resolve_backend(None, torch.device('cuda'), 'op') == 'triton'
    assert backend_module.explain_backend('cuda') == ('triton', 'triton 3.0.0 on CUDA')


def test_environment_variable_forces_backend(monkeypatch):
    monkeypatch.setenv(ENV_VAR, 'reference')
    assert resolve_backend(None, torch.device('cuda'), 'op') == 'reference'
    monkeypatch.setenv(ENV_VAR, 'Auto')
    assert resolve_backend(None, torch.device('cpu'), 'op') == 'reference'
    monkeypatch.setenv(ENV_VAR, 'fast')
    with pytest.raises(ValueError, match=f'{ENV_VAR} must be'):
        resolve_backend(None, torch.device('cpu'), 'op')
    monkeypatch.setenv(ENV_VAR, 'triton')
    assert resolve_backend('reference', torch.device('cpu'), 'op') == 'reference'  # an explicit argument wins


@pytest.mark.skipif(not HAS_TRITON, reason=TRITON_SKIP)
def test_triton_device_requirements(monkeypatch):
    monkeypatch.setenv('TRITON_INTERPRET', '0')
    with pytest.raises(RuntimeError, match='TRITON_INTERPRET=1'):
        resolve_backend('triton', torch.device('cpu'), 'op')
    with pytest.raises(RuntimeError, match='supports CUDA tensors'):
        resolve_backend('triton', torch.device('meta'), 'op')


@pytest.mark.skipif(not HAS_TRITON, reason=TRITON_SKIP)
def test_ddf_runs_the_selected_backend(monkeypatch):
    used = []
    impl = ddf_module._impl
    monkeypatch.setattr(ddf_module, '_impl', lambda name: used.append(name) or impl(name))
    args = {k: v.to(DEVICE) if torch.is_tensor(v) else v for k, v in _args().items()}
    expected = ddf(**args)
    monkeypatch.setenv(ENV_VAR, 'triton')
    torch.testing.assert_close(ddf(**dict(args, backend=None)), expected)
    monkeypatch.delenv(ENV_VAR)
    ddf(**dict(args, backend=None))
    assert used == ['reference', 'triton', 'triton' if DEVICE == 'cuda' else 'reference']


def test_importable_without_triton(tmp_path):
    """A fake triton package that fails to import stands in for a machine without triton."""
    (tmp_path / 'triton').mkdir()
    (tmp_path / 'triton' / '__init__.py').write_text("raise ImportError('triton blocked for this test')\n")
    code = textwrap.dedent("""
        import torch
        from mmdynconv.ops import ddf, triton_available
        assert not triton_available()
        x, fc, fs = torch.randn(1, 2, 5, 5), torch.randn(1, 2, 3, 3), torch.randn(1, 9, 5, 5)
        assert ddf(x, fc, fs, 3).shape == (1, 2, 5, 5)
        try:
            ddf(x, fc, fs, 3, backend='triton')
        except RuntimeError as err:
            assert 'failed to import' in str(err)
        else:
            raise AssertionError('no error')
    """)
    root = pathlib.Path(mmdynconv.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(root)]))
    subprocess.run([sys.executable, '-c', code], check=True, env=env, timeout=300)


def test_ops_import_only_torch_triton_and_stdlib():
    """mmdynconv.ops must stay usable with torch alone (DESIGN §1): no OpenMMLab or other third-party imports."""
    allowed = {'torch', 'triton'} | set(sys.stdlib_module_names)
    for path in pathlib.Path(mmdynconv.ops.__file__).parent.glob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            assert all(n.split('.')[0] in allowed for n in names), f'{path.name} imports {names}'


@pytest.mark.parametrize('backend,C,W,channels_last', [
    ('reference', 4, 9, True), ('reference', 16, 3, False), ('reference', 16, 3, True),
    pytest.param('triton', 4, 9, True, marks=pytest.mark.skipif(not HAS_TRITON, reason=TRITON_SKIP))])
@needs_custom_ops
def test_custom_op_registration(backend, C, W, channels_last):
    """Schema, fake (meta) implementations with the real strides, autograd registration."""
    x = torch.randn(2, C, 7, W, device=DEVICE)
    x = (x.contiguous(memory_format=torch.channels_last) if channels_last else x).requires_grad_()
    Wo = (W - 1) // 2 + 1
    fc = torch.randn(2, C, 3, 3, device=DEVICE, requires_grad=True)
    fs = torch.randn(2, 18, 4, Wo, device=DEVICE, requires_grad=True)
    torch.library.opcheck(torch.ops.mmdynconv.ddf.default, (x, fc, fs, 3, 2, 1, 'mul', backend))
    grad = torch.randn(2, C, 4, Wo, device=DEVICE)
    torch.library.opcheck(torch.ops.mmdynconv.ddf_backward.default,
                          (grad, x.detach(), fc.detach(), fs.detach(), 3, 2, 1, 'add', backend, True, False, True))


def test_double_backward_is_rejected():
    x, fc, fs = (torch.randn(s, requires_grad=True) for s in ((1, 2, 5, 5), (1, 2, 3, 3), (1, 9, 5, 5)))
    (gx,) = torch.autograd.grad(ddf(x, fc, fs, 3, backend='reference').square().sum(), x, create_graph=True)
    with pytest.raises(NotImplementedError, match='double backward'):
        gx.sum().backward()


@pytest.mark.slow
@pytest.mark.parametrize('backend', ['reference', pytest.param('triton', marks=pytest.mark.skipif(
    not HAS_TRITON, reason=TRITON_SKIP))])
@needs_custom_ops
def test_torch_compile_fullgraph(backend):
    x, fc, fs = (torch.randn(s, device=DEVICE, requires_grad=True) for s in ((2, 4, 7, 9), (2, 4, 3, 3),
                                                                             (2, 9, 4, 5)))

    def fn(x, fc, fs):
        return ddf(x.relu(), fc, fs.tanh(), 3, stride=2, combine='add', backend=backend).sin().sum()

    compiled = torch.compile(fn, fullgraph=True)
    grads = torch.autograd.grad(compiled(x, fc, fs), (x, fc, fs))
    expected = torch.autograd.grad(fn(x, fc, fs), (x, fc, fs))
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e)
