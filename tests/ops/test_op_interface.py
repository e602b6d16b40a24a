"""The interface every op module shares (docs/contributing.md, "One pattern for every op"): the public op takes
``backend=`` (None, 'reference', and 'triton' where the op has Triton kernels, which then agree with the reference:
on CPU through Triton's interpreter), ``OP_NAME`` / ``OP_BACKENDS`` / ``check_<op>_args``, custom ops registered as
``mmdynconv::<name>`` and ``mmdynconv::<name>_backward``, and ``__all__`` in every module of mmdynconv.ops."""
import importlib
import inspect
import pathlib

import pytest
import torch
from torch_support import needs_custom_ops

import mmdynconv.ops
from mmdynconv.ops import FDConvAttention, FDConvWeight, fourier_band_index, spectrum_scale, weight_to_spectrum
from mmdynconv.ops.backend import BACKENDS, ENV_VAR, triton_unusable_reason

# op module -> its custom op's registered name (None: not a custom op)
OP_MODULES = {'ddf': 'ddf', 'fdconv': 'fdconv', 'kernel_mixture': 'kernel_mixture_conv', 'carafe': 'carafe',
              'fdconv_fbm': 'frequency_band_mix', 'sapa': 'sapa'}


def _module(name):
    return importlib.import_module(f'mmdynconv.ops.{name}')


def _inputs(op_name):
    """(args, kwargs) of a small float32 call of the op, as leaf tensors requiring grad where floating."""
    gen = torch.Generator().manual_seed(0)

    def rnd(*shape, offset=0.0):
        return (torch.randn(*shape, generator=gen) * 0.3 + offset).requires_grad_()

    if op_name == 'ddf':
        return (rnd(2, 4, 5, 6), rnd(2, 4, 3, 3), rnd(2, 18, 3, 3), 3), dict(stride=2)
    if op_name == 'carafe':
        return (rnd(1, 4, 3, 3), rnd(1, 18, 6, 6), 3, 2, 2), {}
    if op_name == 'kernel_mixture_conv':
        return (rnd(2, 4, 5, 5), rnd(3, 6, 2, 3, 3), rnd(2, 3), rnd(2, 3, 3), rnd(2, 4), rnd(2, 6)), \
            dict(padding=1, groups=2)
    if op_name == 'frequency_band_mix':
        return (rnd(2, 3, 6, 5), rnd(2, 3, 6, 5, offset=1.0)), {}
    if op_name == 'sapa':
        return (rnd(1, 4, 6, 6), rnd(1, 4, 3, 3), rnd(1, 5, 3, 3), 3, 2), {}
    if op_name == 'fdconv_dynamic_conv':
        b, ci, co, k, n = 2, 3, 4, 3, 2
        spectrum = weight_to_spectrum(torch.randn(co, ci, k, k, generator=gen)).requires_grad_()
        x = rnd(b, ci, 5, 5)
        kernel_att, local_feat, local_weight = rnd(b, n, offset=0.5), rnd(b, ci), rnd(co * k * k, 1, 3)
        weight = FDConvWeight(spectrum, fourier_band_index(co * k, ci * k, n), float(spectrum_scale(ci, co) * n),
                              local_weight)
        att = FDConvAttention(kernel_att, local_feat, rnd(b, k * k, offset=1.0), rnd(b, ci, offset=1.0),
                              rnd(b, co, offset=1.0))
        return (x, weight, att), dict(padding=1)
    raise KeyError(op_name)


def _flat(args):
    """``args`` with the tensors of a structure argument (FDConv's FDConvWeight / FDConvAttention) in its place."""
    return [t for a in args for t in (a if isinstance(a, tuple) else (a,))]


def _run(op, args, kwargs, backend):
    """Output and the gradients of <output, 1> for every floating leaf, in float64."""
    out = op(*args, **kwargs, backend=backend)
    leaves = [a for a in _flat(args) if torch.is_tensor(a) and a.requires_grad]
    return [out.double()] + [g.double() for g in torch.autograd.grad(out.sum(), leaves)]


def _to_cuda(a):
    if isinstance(a, tuple):   # FDConv's FDConvWeight / FDConvAttention
        return type(a)(*(_to_cuda(t) for t in a))
    return a.detach().cuda().requires_grad_(a.requires_grad) if torch.is_tensor(a) else a


@pytest.mark.parametrize('name', OP_MODULES)
def test_op_module_follows_the_pattern(name):
    module = _module(name)
    op = getattr(module, module.OP_NAME)
    assert set(module.OP_BACKENDS) <= set(BACKENDS) and 'reference' in module.OP_BACKENDS
    assert inspect.signature(op).parameters['backend'].default is None
    check = getattr(module, f'check_{module.OP_NAME}_args')
    assert {'OP_NAME', 'OP_BACKENDS', module.OP_NAME, check.__name__} <= set(module.__all__)
    assert getattr(mmdynconv.ops, module.OP_NAME) is op


@needs_custom_ops
@pytest.mark.parametrize('name', OP_MODULES)
def test_custom_ops_are_registered_under_the_op_name(name):
    for suffix in ('', '_backward'):
        assert hasattr(torch.ops.mmdynconv, OP_MODULES[name] + suffix)


@pytest.mark.parametrize('name', OP_MODULES)
def test_automatic_backend_on_cpu_is_the_reference(name, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    module = _module(name)
    op = getattr(module, module.OP_NAME)
    args, kwargs = _inputs(module.OP_NAME)
    for auto, ref in zip(_run(op, args, kwargs, None), _run(op, args, kwargs, 'reference')):
        torch.testing.assert_close(auto, ref, rtol=0, atol=0)


@pytest.mark.parametrize('name', OP_MODULES)
def test_triton_backend_matches_the_reference_or_is_refused(name, monkeypatch):
    module = _module(name)
    op = getattr(module, module.OP_NAME)
    args, kwargs = _inputs(module.OP_NAME)
    if 'triton' not in module.OP_BACKENDS:
        with pytest.raises(ValueError, match=rf"{module.OP_NAME}: backend must be None or 'reference' "
                                             rf"\({module.OP_NAME} has no Triton kernel\), got 'triton'"):
            op(*args, **kwargs, backend='triton')
        monkeypatch.setenv(ENV_VAR, 'triton')   # forces Triton only where an op has it
        for forced, ref in zip(_run(op, args, kwargs, None), _run(op, args, kwargs, 'reference')):
            torch.testing.assert_close(forced, ref, rtol=0, atol=0)
        return
    if triton_unusable_reason():
        pytest.skip(triton_unusable_reason())
    if not torch.cuda.is_available():
        monkeypatch.setenv('TRITON_INTERPRET', '1')
    else:
        args = tuple(_to_cuda(a) for a in args)
    for tri, ref in zip(_run(op, args, kwargs, 'triton'), _run(op, args, kwargs, 'reference')):
        torch.testing.assert_close(tri, ref, rtol=1e-4, atol=1e-5)


def _module_names():
    return sorted(p.stem for p in pathlib.Path(mmdynconv.ops.__file__).parent.glob('*.py') if p.stem != '__init__')


@pytest.mark.parametrize('name', _module_names())
def test_every_module_declares_its_public_names(name):
    if name.endswith('_triton') and triton_unusable_reason():
        pytest.skip(triton_unusable_reason())
    module = _module(name)
    names = module.__all__
    assert len(set(names)) == len(names) and all(hasattr(module, n) for n in names), names
    public = {n for n, v in vars(module).items() if not n.startswith('_') and (inspect.isfunction(v) or
              inspect.isclass(v)) and getattr(v, '__module__', None) == module.__name__}
    assert public <= set(names), f'{name}: public but not in __all__: {sorted(public - set(names))}'
