"""Every registered layer gives the same float64 numbers on every supported torch (2.1 to 2.13).

The fixture ``tests/fixtures/layers_float64.pt`` was recorded on torch 2.13 by

    python tests/layers/test_layers_across_torch.py --record [NAME ...]

for each layer registered by mmdynconv.layers (or only the named ones, replaced or added in the existing fixture):
its constructor arguments (the common ones and its declaration's ``small`` arguments), input (and the guidance of a
guided upsampler, ``takes_guidance``), state dict, and the numbers of one training step (train-mode output, input and
parameter gradients, the output after an SGD step). The test rebuilds each layer from the registry on the running
torch, loads the recorded state, repeats the step and compares. FDConv assembles its kernel and computes FBM's
spectra in float32 also for float64 inputs, so its numbers carry float32 rounding, which may differ between torch
releases (FFT back ends); it is compared at a float32 tolerance.
"""
import functools
import inspect
import os.path as osp
import sys

import pytest
import torch
from mmengine.registry import MODELS

import mmdynconv.layers  # noqa: F401  (registers the layers)
from mmdynconv.layers.declarations import declaration

FIXTURE = osp.join(osp.dirname(osp.dirname(__file__)), 'fixtures', 'layers_float64.pt')
CHANNELS, SIZE = 16, (7, 9)
# max |actual - expected| relative to max |expected|
TOLERANCE = {'FDConv': 1e-5}
DEFAULT_TOLERANCE = 1e-10


def registered_layers():
    """{registry name: class} of the nn.Modules registered from mmdynconv.layers."""
    return {name: cls for name, cls in sorted(MODELS.module_dict.items())
            if cls.__module__.startswith('mmdynconv.layers.')}


def layer_args(name, cls):
    params = inspect.signature(cls).parameters
    if 'in_channels' in params:   # a conv: what build_conv_layer passes
        args = dict(in_channels=CHANNELS, out_channels=CHANNELS, kernel_size=3, stride=1, padding=1)
    elif 'channels' in params and 'scale_factor' in params:   # an upsampler
        args = dict(channels=CHANNELS, scale_factor=2)
    else:
        raise AssertionError(f'{name}: neither a conv (in_channels, ...) nor an upsampler (channels, scale_factor); '
                             'add its build arguments to this test')
    return dict(args, **declaration(name).small)   # the layer's small-case arguments, from its declaration


def train_step(layer, x, guidance=None):
    """One training step in float64: the numbers the fixture holds (``guidance``: a guided upsampler's)."""
    layer.train()
    x = x.clone().requires_grad_()
    inputs = (x,) if guidance is None else (x, guidance)
    out = layer(*inputs)
    out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out))
    grads = {k: p.grad.clone() for k, p in layer.named_parameters() if p.grad is not None}
    with torch.no_grad():
        for p in layer.parameters():
            if p.grad is not None:
                p.sub_(0.1 * p.grad)
    return dict(output=out.detach(), grad_input=x.grad, grads=grads, output_after_step=layer(*inputs).detach())


def record(names=()):
    """Record every registered layer, or only ``names`` into the existing fixture; each layer seeded with 0."""
    cases = {}
    for name, cls in registered_layers().items():
        if names and name not in names:
            continue
        torch.manual_seed(0)
        args = layer_args(name, cls)
        layer = MODELS.build(dict(type=name, **args)).double()
        x = torch.randn(2, CHANNELS, *SIZE, dtype=torch.float64)
        guidance = None
        if getattr(layer, 'takes_guidance', False):
            guidance = torch.randn(2, layer.guidance_channels, 2 * SIZE[0], 2 * SIZE[1], dtype=torch.float64)
        state = {k: v.clone() for k, v in layer.state_dict().items()}
        cases[name] = dict(args=args, input=x, state_dict=state, **train_step(layer, x, guidance),
                           **({} if guidance is None else dict(guidance=guidance)))
    unknown = sorted(set(names) - set(cases))
    if unknown:
        raise SystemExit(f'not registered: {unknown}')
    if names:
        cases = dict(torch.load(FIXTURE)['cases'], **cases)
    torch.save(dict(torch_version=str(torch.__version__), cases=cases), FIXTURE)
    print(f'recorded {", ".join(names or cases)} on torch {torch.__version__} -> {FIXTURE}')


@functools.lru_cache(maxsize=1)
def _recorded():
    return torch.load(FIXTURE)['cases']


def test_fixture_covers_every_registered_layer():
    missing = sorted(set(registered_layers()) - set(_recorded()))
    assert not missing, f'layers without recorded numbers: {missing}; run python {__file__} --record ' \
                        f'{" ".join(missing)}'


@pytest.mark.parametrize('name', sorted(_recorded()) if osp.exists(FIXTURE) else [])
def test_one_training_step_matches_the_recording(name):
    case = _recorded()[name]
    layer = MODELS.build(dict(type=name, **case['args'])).double()
    layer.load_state_dict(case['state_dict'], strict=True)
    got = train_step(layer, case['input'], case.get('guidance'))
    tolerance = TOLERANCE.get(name, DEFAULT_TOLERANCE)
    pairs = [('output', got['output'], case['output']), ('grad_input', got['grad_input'], case['grad_input']),
             ('output_after_step', got['output_after_step'], case['output_after_step'])]
    assert sorted(got['grads']) == sorted(case['grads']), name
    pairs += [(f'grad of {k}', got['grads'][k], v) for k, v in case['grads'].items()]
    for what, actual, expected in pairs:
        assert actual.dtype == torch.float64 and actual.shape == expected.shape, f'{name} {what}'
        err = (actual - expected).abs().max().item()
        scale = max(expected.abs().max().item(), 1e-30)
        assert err <= tolerance * scale, (f'{name} {what}: max error {err:.3g} > {tolerance:g} x {scale:.3g} '
                                          f'(torch {torch.__version__} against the recording)')


if __name__ == '__main__':
    if sys.argv[1:2] != ['--record']:
        raise SystemExit(f'usage: python {sys.argv[0]} --record [NAME ...]')
    record(sys.argv[2:])
