"""One conformance suite for every layer registered by ``mmdynconv.layers`` (the edge cases a layer meets in a model).

The layers are found by walking mmengine's root ``MODELS`` registry, so a newly registered layer gets every test below
by being registered: a conv is built as ``build_conv_layer`` builds it (in_channels, out_channels, kernel_size,
stride, padding), an upsampler as ``build_upsample_layer`` does (channels, scale_factor). A layer the walk cannot
build fails ``test_builds`` naming it.

Per layer: an empty batch (B = 0, what mmdet's mask heads pass for an image without positive RoIs) in train and eval
mode with backward; batch 1 in training; odd and 1×1 spatial sizes; non-contiguous and channels-last inputs (the
same numbers as contiguous); bfloat16 (and float16 where CPU autocast has it) autocast forward and backward; a state
dict round trip into a fresh layer; ``copy.deepcopy`` and pickle; a wrong channel count, rank or an integer input
-> a clear error naming the input and what it expects.

A guided upsampler (class or instance attribute ``takes_guidance``, the ``UpsamplerFPN`` protocol) is called as
``layer(x, guidance)`` with a seeded guidance of the output's size (:func:`call`).
"""
import copy
import inspect
import pickle
import warnings

import pytest
import torch
from mmengine.registry import MODELS
from torch_support import AUTOCAST_DTYPES

import mmdynconv.layers  # noqa: F401  (registers the layers)
from mmdynconv.layers.declarations import DECLARATIONS

# 24 > FDConv's dynamic_min_channels (16): FDConv is built dynamic (KSM, FBM), not as its plain-conv fallback.
CHANNELS = 24
SIZE = (6, 8)
# Per layer, from its declaration (mmdynconv/layers/declarations.py): ``small`` arguments beyond the common ones;
# ``float32_inside``: layers that compute parts in float32 also for float64 inputs (FDConv: its kernel and FBM's
# spectra), compared at that tolerance (max error relative to the largest value) where a memory layout changes the
# summation order; ``autocast_xfail``: known autocast failures, strict (a case that starts passing must be removed).
EXTRA = {name: d.small for name, d in DECLARATIONS.items()}
FLOAT32_INSIDE = {name: d.float32_inside for name, d in DECLARATIONS.items() if d.float32_inside is not None}
AUTOCAST_XFAIL = {(name, getattr(torch, dtype)): reason for name, d in DECLARATIONS.items()
                  for dtype, reason in d.autocast_xfail.items()}


def registered_layers():
    """{registry name: class} of the nn.Modules registered from mmdynconv.layers."""
    return {name: cls for name, cls in sorted(MODELS.module_dict.items())
            if inspect.isclass(cls) and issubclass(cls, torch.nn.Module)
            and cls.__module__.startswith('mmdynconv.layers.')}


LAYERS = sorted(registered_layers())


def is_conv(name):
    return 'in_channels' in inspect.signature(registered_layers()[name]).parameters


def layer_args(name):
    params = inspect.signature(registered_layers()[name]).parameters
    if 'in_channels' in params and 'out_channels' in params:   # a conv: what build_conv_layer passes
        args = dict(in_channels=CHANNELS, out_channels=CHANNELS, kernel_size=3, stride=1, padding=1)
    elif 'channels' in params and 'scale_factor' in params:   # an upsampler: what build_upsample_layer passes
        args = dict(channels=CHANNELS, scale_factor=2)
    else:
        raise AssertionError(f'{name}: neither a conv (in_channels, out_channels, ...) nor an upsampler (channels, '
                             'scale_factor); add its build arguments to tests/layers/test_conformance.py')
    return dict(args, **EXTRA.get(name, {}))


def build(name, seed=0, dtype=torch.float32):
    args = layer_args(name)
    torch.manual_seed(seed)
    try:
        layer = MODELS.build(dict(type=name, **args))
    except Exception as e:   # any failure to build is this layer's failure
        raise AssertionError(f'{name}: the registry walk cannot build it with {args}: {e!r}') from e
    return layer.to(dtype)


def output_shape(name, b, h, w):
    """What the layer must return for a (b, CHANNELS, h, w) input (k = 3, stride 1, padding 1; or ×2 upsampling)."""
    return (b, CHANNELS, h, w) if is_conv(name) else (b, CHANNELS, 2 * h, 2 * w)


def make_input(b, h, w, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, CHANNELS, h, w, generator=g, dtype=dtype)


def layer_inputs(layer, x):
    """The arguments ``layer`` takes for the input x: (x,), or for a guided upsampler (``takes_guidance``) (x,
    guidance) with a seeded guidance (B, C_g, 2H, 2W), C_g its ``guidance_channels`` (CHANNELS if it has none)."""
    if not getattr(layer, 'takes_guidance', False):
        return (x,)
    b = x.shape[0] if x.dim() == 4 else 2
    channels = getattr(layer, 'guidance_channels', None) or CHANNELS
    dtype = x.dtype if x.is_floating_point() else torch.float32
    g = torch.Generator().manual_seed(2)
    return x, torch.randn(b, channels, 2 * x.shape[-2], 2 * x.shape[-1], generator=g, dtype=dtype)


def call(layer, x):
    """``layer(x)``, or ``layer(x, guidance)`` for a guided upsampler (:func:`layer_inputs`)."""
    return layer(*layer_inputs(layer, x))


def run_step(layer, x, train=True):
    """Forward (train or eval mode) and backward of a fixed weighted sum: output, input grad, parameter grads."""
    layer.train(train)
    layer.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_()
    out = call(layer, x)
    weights = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view(out.shape)
    (out.double() * weights).sum().backward()
    grads = {k: p.grad for k, p in layer.named_parameters()}
    return out, x.grad, grads


def assert_finite(name, what, t):
    assert t is not None, f'{name}: {what} is None'
    assert torch.isfinite(t).all(), f'{name}: {what} is not finite'


def assert_same(name, what, actual, expected, tol=0.0):
    assert actual.shape == expected.shape, f'{name} {what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}'
    err = (actual.double() - expected.double()).abs().max().item() if actual.numel() else 0.0
    scale = max(expected.abs().max().item(), 1e-30) if expected.numel() else 1.0
    assert err <= tol * scale, f'{name} {what}: max error {err:.3g} > {tol:g} x {scale:.3g}'


def test_walk_finds_every_layer_package_exports():
    """Every nn.Module class exported by mmdynconv.layers that is registered is walked (none hidden by a filter)."""
    exported = {cls for cls in vars(mmdynconv.layers).values()
                if inspect.isclass(cls) and issubclass(cls, torch.nn.Module)}
    registered = {cls for cls in MODELS.module_dict.values() if cls in exported}
    assert registered == set(registered_layers().values())
    assert len(LAYERS) >= 8, LAYERS


@pytest.mark.parametrize('name', LAYERS)
def test_builds(name):
    layer = build(name)
    assert isinstance(layer, torch.nn.Module), name
    assert getattr(layer, 'dynamic', True), f'{name}: built as its static fallback; raise CHANNELS or add EXTRA args'


@pytest.mark.parametrize('train', [True, False], ids=['train', 'eval'])
@pytest.mark.parametrize('name', LAYERS)
def test_empty_batch(name, train):
    """B = 0: a (0, C, Ho, Wo) output and a backward that gives zero parameter gradients (as nn.Conv2d does), for
    every parameter a non-empty batch trains (DDP without find_unused_parameters expects a gradient for each)."""
    layer = build(name)
    trained = {k for k, g in run_step(copy.deepcopy(layer), make_input(2, *SIZE), train)[2].items() if g is not None}
    buffers = {k: v.clone() for k, v in layer.named_buffers()}
    with warnings.catch_warnings():
        warnings.simplefilter('error', UserWarning)   # nothing to warn about (once per process) in every empty batch
        out, grad_x, grads = run_step(layer, make_input(0, *SIZE), train)
    assert tuple(out.shape) == output_shape(name, 0, *SIZE), f'{name}: output shape {tuple(out.shape)}'
    assert out.dtype == torch.float32, f'{name}: output dtype {out.dtype}'
    assert tuple(grad_x.shape) == (0, CHANNELS, *SIZE), f'{name}: input grad shape {tuple(grad_x.shape)}'
    for k in sorted(trained):
        assert grads[k] is not None, f'{name}: no gradient for {k} from an empty batch'
        assert not grads[k].any(), f'{name}: the gradient of {k} is not zero for an empty batch'
    for k, v in layer.named_buffers():
        if v.is_floating_point():
            assert torch.equal(v, buffers[k]), f'{name}: buffer {k} changed by an empty batch'


@pytest.mark.parametrize('name', LAYERS)
def test_batch_one_training(name):
    out, grad_x, grads = run_step(build(name), make_input(1, *SIZE), train=True)
    assert tuple(out.shape) == output_shape(name, 1, *SIZE), f'{name}: output shape {tuple(out.shape)}'
    assert_finite(name, 'output', out)
    assert_finite(name, 'input grad', grad_x)
    for k, g in grads.items():
        assert_finite(name, f'grad of {k}', g)


@pytest.mark.parametrize('size', [(1, 1), (5, 7), (7, 3), (1, 6)], ids=lambda s: f'{s[0]}x{s[1]}')
@pytest.mark.parametrize('name', LAYERS)
def test_spatial_sizes(name, size):
    for train in (True, False):
        out, grad_x, grads = run_step(build(name), make_input(2, *size), train)
        assert tuple(out.shape) == output_shape(name, 2, *size), f'{name}: output shape {tuple(out.shape)} for {size}'
        assert_finite(name, f'output ({size}, train={train})', out)
        assert_finite(name, f'input grad ({size}, train={train})', grad_x)


def non_contiguous(x):
    """The same values as x in a non-contiguous view (every other channel of a wider, padded tensor)."""
    b, c, h, w = x.shape
    wide = torch.zeros(b, 2 * c, h, w + 3, dtype=x.dtype)
    wide[:, ::2, :, 1:w + 1] = x
    view = wide[:, ::2, :, 1:w + 1]
    assert not view.is_contiguous() and torch.equal(view, x)
    return view


def channels_last(x):
    view = x.contiguous(memory_format=torch.channels_last)
    assert not view.is_contiguous() and torch.equal(view, x)
    return view


@pytest.mark.parametrize('layout', [non_contiguous, channels_last], ids=['non_contiguous', 'channels_last'])
@pytest.mark.parametrize('name', LAYERS)
def test_memory_layouts(name, layout):
    """Output, input gradient and parameter gradients equal those of the contiguous input (in float64, up to the
    summation order of the float32 parts of a layer in FLOAT32_INSIDE)."""
    layer = build(name, dtype=torch.float64)
    x = make_input(2, *SIZE, dtype=torch.float64)
    tol = FLOAT32_INSIDE.get(name, 1e-12)
    for train in (True, False):
        expected = run_step(copy.deepcopy(layer), x, train)
        got = run_step(copy.deepcopy(layer), layout(x), train)
        mode = 'train' if train else 'eval'
        assert_same(name, f'output ({mode})', got[0], expected[0], tol)
        assert_same(name, f'input grad ({mode})', got[1], expected[1], tol)
        for k, g in expected[2].items():
            if g is None:
                assert got[2][k] is None, f'{name}: grad of {k} ({mode})'
            else:
                assert_same(name, f'grad of {k} ({mode})', got[2][k], g, tol)


@pytest.mark.parametrize('dtype', AUTOCAST_DTYPES, ids=str)
@pytest.mark.parametrize('name', LAYERS)
def test_cpu_autocast(name, dtype, request):
    """Forward and backward under CPU autocast: finite numbers close to the float32 ones, float32 gradients."""
    if (name, dtype) in AUTOCAST_XFAIL:
        request.applymarker(pytest.mark.xfail(reason=AUTOCAST_XFAIL[name, dtype], strict=True))
    layer = build(name)
    x = make_input(2, *SIZE)
    expected = run_step(copy.deepcopy(layer), x, train=True)[0]
    with torch.autocast('cpu', dtype=dtype):
        out, grad_x, grads = run_step(layer, x, train=True)
    assert out.dtype in (dtype, torch.float32), f'{name}: output dtype {out.dtype} under {dtype} autocast'
    assert_finite(name, 'output', out)
    assert_same(name, 'output against float32', out, expected, 0.05)
    assert grad_x.dtype == torch.float32, f'{name}: input grad dtype {grad_x.dtype}'
    assert_finite(name, 'input grad', grad_x)
    for k, g in grads.items():
        assert_finite(name, f'grad of {k}', g)
        assert g.dtype == torch.float32, f'{name}: grad of {k} has dtype {g.dtype}'


def trained(name):
    """A layer whose parameters and buffers all differ from a fresh one's: parameters moved, statistics updated."""
    layer = build(name)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.05 * torch.randn_like(p))
    layer.train()
    call(layer, make_input(2, *SIZE, seed=5))
    return layer


def outputs(layer, x):
    with torch.no_grad():
        return [call(layer.train(mode), x) for mode in (False, True)]


@pytest.mark.parametrize('name', LAYERS)
def test_state_dict_round_trip(name):
    layer = trained(name)
    fresh = build(name, seed=1)
    fresh.load_state_dict(layer.state_dict(), strict=True)
    x = make_input(2, *SIZE)
    for got, expected, mode in zip(outputs(fresh, x), outputs(layer, x), ('eval', 'train')):
        assert torch.equal(got, expected), f'{name}: a state dict loaded into a fresh layer changes the {mode} output'


@pytest.mark.parametrize('how', ['deepcopy', 'pickle'])
@pytest.mark.parametrize('name', LAYERS)
def test_copy_and_pickle(name, how):
    layer = trained(name)
    clone = copy.deepcopy(layer) if how == 'deepcopy' else pickle.loads(pickle.dumps(layer))
    assert type(clone) is type(layer)
    x = make_input(2, *SIZE)
    for got, expected, mode in zip(outputs(clone, x), outputs(layer, x), ('eval', 'train')):
        assert torch.equal(got, expected), f'{name}: {how} changes the {mode} output'


@pytest.mark.parametrize('name', LAYERS)
def test_wrong_channel_count_is_a_clear_error(name):
    layer = build(name)
    for x in (torch.randn(2, CHANNELS + 1, *SIZE), torch.randn(2, CHANNELS - 1, *SIZE),
              torch.randn(CHANNELS, *SIZE)):
        with pytest.raises((ValueError, TypeError)) as info:
            call(layer, x)
        message = str(info.value)
        assert message.startswith(f'{name}: ') and 'input' in message and f'(B, {CHANNELS}, H, W)' in message, \
            f'{name}: input of shape {tuple(x.shape)} gave the unclear error {info.type.__name__}: {message}'


@pytest.mark.parametrize('dtype', [torch.int64, torch.uint8, torch.bool], ids=str)
@pytest.mark.parametrize('name', LAYERS)
def test_non_floating_input_is_a_clear_error(name, dtype):
    layer = build(name)
    x = torch.ones(2, CHANNELS, *SIZE, dtype=dtype)
    with pytest.raises(TypeError) as info:
        call(layer, x)
    message = str(info.value)
    assert message.startswith(f'{name}: ') and 'input' in message and str(dtype) in message, \
        f'{name}: a {dtype} input gave the unclear error: {message}'
