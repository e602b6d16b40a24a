"""fdconv_dynamic_conv as a custom op (the pattern of ddf): registration (opcheck), torch.compile(fullgraph=True),
backend switch on the op and the layer, validation of the band index, double backward."""
import pytest
import torch
from torch_support import needs_custom_ops

from mmdynconv.layers import FDConv
from mmdynconv.ops import (
    FDConvAttention,
    FDConvWeight,
    fdconv_dynamic_conv,
    fourier_band_index,
    spectrum_scale,
    weight_to_spectrum,
)

HAS_TRITON = pytest.importorskip('mmdynconv.ops.backend').triton_available()


def _inputs(b=2, ci=5, co=6, k=3, n=4, h=6, w=7, requires_grad=True):
    gen = torch.Generator().manual_seed(0)

    def rnd(*shape, scale=1.0, offset=0.0):
        t = torch.randn(*shape, generator=gen) * scale + offset
        return t.requires_grad_(requires_grad)

    tensors = (rnd(b, ci, h, w), weight_to_spectrum(torch.randn(co, ci, k, k, generator=gen)).requires_grad_(
        requires_grad), fourier_band_index(co * k, ci * k, n), rnd(b, n, scale=0.1, offset=1 / n), rnd(b, ci),
        rnd(co * k * k, 1, 3, scale=0.3), rnd(b, k * k, scale=0.3, offset=1.0), rnd(b, ci, scale=0.3, offset=1.0),
        rnd(b, co, scale=0.3, offset=1.0), rnd(co))
    return tensors, float(spectrum_scale(ci, co) * n)


def _call(tensors, scale, **kwargs):
    """fdconv_dynamic_conv of the flat tensors of :func:`_inputs` (the custom op's order: x … bias)."""
    x, spectrum, band, kernel_att, local_feat, local_weight, pos_att, in_att, out_att, bias = tensors
    weight = FDConvWeight(spectrum, band, scale, local_weight)
    att = FDConvAttention(kernel_att, local_feat, pos_att, in_att, out_att)
    return fdconv_dynamic_conv(x, weight, att, bias, **kwargs)


@needs_custom_ops
@pytest.mark.parametrize('fold', [True, False])
@pytest.mark.parametrize('save', [True, False])
def test_custom_op_registration(fold, save, monkeypatch):
    """Schema, fake implementation (shapes of the output and of the saved kernels), autograd registration."""
    if not save:
        monkeypatch.setattr('mmdynconv.ops.fdconv.SAVE_TILES_ELEMENTS', 0)
    tensors, scale = _inputs()
    args = (*tensors, scale, [2, 1], [1, 1], [1, 1], fold, 'reference')
    torch.library.opcheck(torch.ops.mmdynconv.fdconv.default, args)


@needs_custom_ops
def test_custom_op_without_kernel_attention_or_position():
    tensors, scale = _inputs(k=1, n=1)
    tensors = list(tensors)
    tensors[3] = tensors[6] = None  # kernel_att (n = 1), pos_att (k = 1)
    torch.library.opcheck(torch.ops.mmdynconv.fdconv.default, (*tensors, scale, [1, 1], [0, 0], [1, 1], True,
                                                               'reference'))


@needs_custom_ops
@pytest.mark.slow
def test_torch_compile_fullgraph():
    tensors, scale = _inputs()

    def fn(x, spectrum, band, kernel_att, *rest):
        return _call((x.relu(), spectrum, band, kernel_att.abs(), *rest), scale, stride=2, padding=1,
                     backend='reference').sin().sum()

    leaves = [t for t in tensors if t.requires_grad]
    compiled = torch.compile(fn, fullgraph=True)
    grads = torch.autograd.grad(compiled(*tensors), leaves)
    expected = torch.autograd.grad(fn(*tensors), leaves)
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('fold', [True, False])
def test_empty_batch(fold):
    """B = 0: a (0, Co, Ho, Wo) output; zero gradients for the spectrum, the local weight and the bias."""
    tensors, scale = _inputs(b=0)
    y = _call(tensors, scale, stride=2, padding=1, fold=fold, backend='reference')
    assert y.shape == (0, 6, 3, 4)
    y.sum().backward()
    for t in tensors:
        if t.requires_grad:
            assert t.grad.shape == t.shape and not t.grad.any()


def test_band_index_values_are_checked():
    tensors, scale = _inputs(n=4)
    tensors = list(tensors)
    tensors[2] = tensors[2].clone()
    tensors[2][0, 0] = 4
    with pytest.raises(ValueError, match=r'band_index values must lie in \[0, n\) with n = 4'):
        _call(tensors, scale, padding=1)


def test_arguments_are_checked():
    tensors, scale = _inputs()
    with pytest.raises(TypeError, match='in_att must be a torch.Tensor'):
        _call((*tensors[:7], 'x', *tensors[8:]), scale)
    with pytest.raises(ValueError, match="backend must be None, 'reference' or 'triton'"):
        _call(tensors, scale, backend='cuda')
    with pytest.raises(ValueError, match='padding must be >= 0'):
        _call(tensors, scale, padding=-1)


def test_double_backward_is_rejected():
    tensors, scale = _inputs()
    y = _call(tensors, scale, padding=1)
    (gx,) = torch.autograd.grad(y.square().sum(), tensors[0], create_graph=True)
    with pytest.raises(NotImplementedError, match='double backward'):
        gx.sum().backward()


def test_layer_backend_argument(monkeypatch):
    """An explicit backend wins over MMDYNCONV_BACKEND: 'reference' runs on CPU where a forced Triton cannot."""
    x = torch.randn(2, 24, 6, 6)
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)
    monkeypatch.setenv('MMDYNCONV_BACKEND', 'triton')
    assert FDConv(24, 32, 3, padding=1, kernel_num=8, backend='reference')(x).shape == (2, 32, 6, 6)
    if HAS_TRITON:
        with pytest.raises(RuntimeError, match='TRITON_INTERPRET'):
            FDConv(24, 32, 3, padding=1, kernel_num=8)(x)
    with pytest.raises(ValueError, match='backend'):
        FDConv(24, 32, 3, padding=1, kernel_num=8, backend='cuda')
