"""FDConv's functional pieces: the FDW spectrum and bands, the lean op against the straightforward oracle (values and
gradients), and the lean FBM against explicit bands."""
import pytest
import torch

from mmdynconv.ops import FDConvAttention, FDConvWeight, fdconv_dynamic_conv
from mmdynconv.ops.fdconv_fbm import frequency_band_mix, lowpass_masks
from mmdynconv.ops.fdconv_oracle import fdconv_oracle, fdconv_weight_oracle, frequency_band_mix_oracle
from mmdynconv.ops.fdconv_spectrum import (
    fourier_band_index,
    spectrum_scale,
    spectrum_to_weight,
    weight_to_spectrum,
    weight_to_tiled,
)


def _close(actual, expected, tol=2e-5):
    scale = expected.abs().max().clamp_min(1e-12)
    assert float((actual - expected).abs().max() / scale) < tol


# ---------------------------------------------------------------------------------------------------------- FDW
@pytest.mark.parametrize('co,ci,k', [(6, 5, 3), (4, 7, 1), (3, 3, 3), (5, 2, 5)])
def test_spectrum_round_trip_and_layout(co, ci, k):
    w = torch.randn(co, ci, k, k, dtype=torch.float64)
    spectrum = weight_to_spectrum(w)
    assert spectrum.shape == (co * k, ci * k // 2 + 1, 2) and spectrum.dtype == torch.float32
    _close(spectrum_to_weight(spectrum, co, ci, k).double(), w, 1e-6)
    tiled = weight_to_tiled(w)
    assert torch.equal(tiled[1 * k + (k - 1), 0 * k + (k // 2)], w[1, 0, k - 1, k // 2])
    expected = torch.view_as_real(torch.fft.rfft2(tiled)) / spectrum_scale(ci, co)
    _close(spectrum.double(), expected, 1e-6)


@pytest.mark.parametrize('rows,cols,n', [(12, 12, 4), (15, 21, 8), (9, 7, 5), (6, 3, 12)])
@pytest.mark.parametrize('order', ['release', 'exact'])
def test_band_index_sorted_by_radius_with_balanced_sizes(rows, cols, n, order):
    band = fourier_band_index(rows, cols, n, order)
    assert band.shape == (rows, cols // 2 + 1) and band.dtype == torch.int64
    fr = torch.fft.fftfreq(rows, dtype=torch.float64)[:, None]
    fc = torch.fft.rfftfreq(cols, dtype=torch.float64)[None, :]
    radius = (fr ** 2 + fc ** 2).sqrt().expand_as(band)
    sizes = torch.bincount(band.flatten(), minlength=n)
    total = band.numel()
    assert sizes.sum() == total and int(sizes.max() - sizes.min()) <= (0 if total % n == 0 else 1)
    for j in range(n - 1):  # every band lies at radii no larger than the next band's (the release: in fp32)
        assert radius[band == j].max() <= radius[band == j + 1].min() + (1e-12 if order == 'exact' else 1e-7)
    assert band[0, 0] == 0  # DC is in the lowest band


def test_band_index_is_deterministic_and_stable():
    # tied radii are ordered by row-major position: (r, c) = (1, 0) comes before (rows-1, 0) in a square matrix
    band = fourier_band_index(8, 8, 40, 'exact')
    assert torch.equal(band, fourier_band_index(8, 8, 40, 'exact'))
    assert band[1, 0] <= band[7, 0] and band[0, 1] <= band[1, 0]


def test_band_index_rejects_too_many_bands():
    with pytest.raises(ValueError, match='kernel_num'):
        fourier_band_index(3, 3, 7)


def test_band_kernels_sum_to_the_weight():
    """By linearity Σ_j W_j = W: each band's kernel is the irfft2 of its masked spectrum."""
    co, ci, k, n = 5, 6, 3, 7
    w = torch.randn(co, ci, k, k)
    spectrum, band = weight_to_spectrum(w), fourier_band_index(co * k, ci * k, n)
    ones = torch.ones(1, co, ci, k, k)
    att = torch.eye(n)  # sample j keeps band j only (times n·s)
    kernels = fdconv_weight_oracle(spectrum, band, spectrum_scale(ci, co), att, ones.expand(n, -1, -1, -1, -1),
                                      torch.ones(n, k * k), torch.ones(n, ci), torch.ones(n, co))
    _close(kernels.sum(0), w, 1e-5)
    complex_spec = torch.view_as_complex(spectrum)
    for j in (0, n - 1):
        masked = torch.where(band == j, complex_spec, torch.zeros_like(complex_spec)) * spectrum_scale(ci, co)
        tiled = torch.fft.irfft2(masked, s=(co * k, ci * k))
        _close(kernels[j], tiled.view(co, k, ci, k).permute(0, 2, 1, 3), 1e-5)


# ------------------------------------------------------------------------------------------- lean op vs oracle
def _op_inputs(b, ci, co, k, n, h, w, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, offset=0.0):
        return torch.randn(*shape, generator=gen) * scale + offset

    spectrum = weight_to_spectrum(rnd(co, ci, k, k))
    tensors = dict(x=rnd(b, ci, h, w), spectrum=spectrum,
                   kernel_att=(rnd(b, n, scale=0.2, offset=1.0) / n) if n > 1 else None,
                   local_feat=rnd(b, ci), local_weight=rnd(co * k * k, 1, 5, scale=0.3),
                   pos_att=rnd(b, k * k, scale=0.3, offset=1.0) if k > 1 else None,
                   in_att=rnd(b, ci, scale=0.3, offset=1.0), out_att=rnd(b, co, scale=0.3, offset=1.0),
                   bias=rnd(co))
    return tensors, fourier_band_index(co * k, ci * k, n), spectrum_scale(ci, co) * n


def _structures(tensors, band, scale):
    """(FDConvWeight, FDConvAttention) of the dict :func:`_op_inputs` makes."""
    weight = FDConvWeight(tensors['spectrum'], band, scale, tensors['local_weight'])
    att = FDConvAttention(*(tensors[key] for key in ('kernel_att', 'local_feat', 'pos_att', 'in_att', 'out_att')))
    return weight, att


def _run(fn, tensors, band, scale, **kwargs):
    leaves = {key: (t.clone().requires_grad_() if t is not None else None) for key, t in tensors.items()}
    y = fn(leaves['x'], *_structures(leaves, band, scale), leaves['bias'], **kwargs)
    grad = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    (y * grad).sum().backward()
    return y.detach(), {key: t.grad for key, t in leaves.items() if t is not None}


CASES = [  # b, ci, co, k, n, h, w, stride, padding, dilation
    (2, 5, 7, 3, 4, 6, 7, 1, 1, 1),      # odd Ci·k
    (3, 6, 4, 3, 5, 5, 5, 2, 1, 1),      # stride 2, odd size
    (2, 4, 6, 1, 3, 4, 4, 1, 0, 1),      # k = 1
    (2, 4, 6, 1, 3, 5, 4, 2, 0, 1),      # k = 1, stride 2 (batched-matmul path)
    (2, 4, 6, 1, 3, 5, 4, 2, 1, 1),      # k = 1 with padding (grouped-conv path)
    (1, 3, 5, 3, 1, 5, 4, 1, 1, 1),      # batch 1, n = 1 (no kernel attention)
    (2, 6, 6, 3, 7, 7, 6, 1, 2, 2),      # dilation 2; N = 18·10 = 180 not divisible by 7
    (2, 4, 5, 3, 6, 4, 4, (2, 1), (1, 0), 1),  # asymmetric stride / padding
]


@pytest.mark.parametrize('fold,chunk,save', [(None, 1 << 22, 1 << 24), (True, 1 << 22, 1 << 24),
                                             (False, 1 << 22, 1 << 24), (None, 1, 1 << 24), (None, 1 << 22, 0),
                                             (True, 1, 0), (False, 1, 0)])
@pytest.mark.parametrize('case', CASES)
def test_lean_op_matches_oracle(case, fold, chunk, save, monkeypatch):
    """chunk = 1 processes the per-sample kernel work one sample at a time (what large layers do); save = 0 recomputes
    the mixed kernels in backward instead of saving them (what layers above SAVE_TILES_ELEMENTS do)."""
    monkeypatch.setattr('mmdynconv.ops.fdconv.CHUNK_ELEMENTS', chunk)
    monkeypatch.setattr('mmdynconv.ops.fdconv.SAVE_TILES_ELEMENTS', save)
    b, ci, co, k, n, h, w, stride, padding, dilation = case
    tensors, band, scale = _op_inputs(b, ci, co, k, n, h, w)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation)
    y_ref, g_ref = _run(fdconv_oracle, tensors, band, scale, **kwargs)
    y, g = _run(fdconv_dynamic_conv, tensors, band, scale, fold=fold, **kwargs)
    assert y.is_contiguous() and all(t.is_contiguous() for t in g.values())
    _close(y, y_ref)
    assert g.keys() == g_ref.keys()
    for key in g_ref:
        _close(g[key], g_ref[key], 5e-5)


def test_lean_op_partial_gradients():
    """Only some inputs need gradients (e.g. a frozen kernel): the others come back as None."""
    tensors, band, scale = _op_inputs(2, 4, 5, 3, 4, 5, 5)
    x = tensors['x'].clone().requires_grad_()
    pos = tensors['pos_att'].clone().requires_grad_()
    y = fdconv_dynamic_conv(x, *_structures(dict(tensors, pos_att=pos), band, scale), padding=1)
    y.sum().backward()
    leaves = {key: t.clone().requires_grad_() if key in ('x', 'pos_att') else t for key, t in tensors.items()}
    leaves['bias'] = None
    y_ref = fdconv_oracle(leaves['x'], *_structures(leaves, band, scale), padding=1)
    y_ref.sum().backward()
    _close(x.grad, leaves['x'].grad)
    _close(pos.grad, leaves['pos_att'].grad)


@pytest.mark.parametrize('fold', [True, False])
@pytest.mark.parametrize('wanted', [('spectrum',), ('kernel_att',), ('local_weight',), ('local_feat',),
                                    ('in_att', 'out_att'), ('spectrum', 'local_weight', 'bias')])
def test_lean_op_gradient_subsets(wanted, fold, monkeypatch):
    """Each backward branch alone (spectral only, local logits only, channel attentions only) against the oracle."""
    monkeypatch.setattr('mmdynconv.ops.fdconv.CHUNK_ELEMENTS', 1)
    tensors, band, scale = _op_inputs(3, 5, 6, 3, 4, 5, 6)
    results = []
    for fn, kwargs in ((fdconv_oracle, {}), (fdconv_dynamic_conv, dict(fold=fold))):
        leaves = {key: t.clone().requires_grad_(key in wanted) for key, t in tensors.items()}
        y = fn(leaves['x'], *_structures(leaves, band, scale), leaves['bias'], padding=1, **kwargs)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        results.append({key: t.grad for key, t in leaves.items()})
    for key in tensors:
        if key in wanted:
            _close(results[1][key], results[0][key], 5e-5)
        else:
            assert results[1][key] is None


@pytest.mark.parametrize('n', [1, 4])
def test_lean_op_backward_twice_with_retained_graph(n):
    """The saved mixed kernels are released by the first backward; a second one recomputes them."""
    tensors, band, scale = _op_inputs(2, 4, 5, 3, n, 5, 5)
    spectrum = tensors['spectrum'].clone().requires_grad_()
    y = fdconv_dynamic_conv(tensors['x'], *_structures(dict(tensors, spectrum=spectrum), band, scale), padding=1)
    y.sum().backward(retain_graph=True)
    first = spectrum.grad.clone()
    y.sum().backward()
    _close(spectrum.grad, 2 * first, 1e-5)


def test_fold_rule_picks_activations_for_wide_small_layers():
    from mmdynconv.ops.fdconv import folds_channel_attention
    assert not folds_channel_attention((1, 64, 4, 4), 64, 3, padding=1)   # 64·64·9 > 64·16 + 64·16
    assert folds_channel_attention((1, 8, 32, 32), 8, 3, padding=1)


def test_lean_op_bad_arguments():
    tensors, band, scale = _op_inputs(2, 4, 5, 3, 4, 5, 5)
    weight, att = _structures(tensors, band, scale)
    args = [tensors['x'], weight, att]
    with pytest.raises(TypeError, match='stride'):
        fdconv_dynamic_conv(*args, stride=1.5)
    with pytest.raises(TypeError, match='fold'):
        fdconv_dynamic_conv(*args, fold='yes')
    # pos_att missing for k = 3
    with pytest.raises(ValueError, match='pos_att'):
        fdconv_dynamic_conv(tensors['x'], weight, att._replace(pos_att=None))
    with pytest.raises(ValueError, match='in_att'):
        fdconv_dynamic_conv(tensors['x'], weight, att._replace(in_att=tensors['in_att'][:, :3]))


def test_lean_op_autocast_keeps_ffts_in_fp32():
    tensors, band, scale = _op_inputs(2, 4, 5, 3, 4, 6, 6)
    args = [tensors['x'], *_structures(tensors, band, scale)]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = fdconv_dynamic_conv(*args, padding=1)
    assert y.dtype == torch.bfloat16
    expected = fdconv_oracle(*args, padding=1)
    _close(y.float(), expected, 3e-2)
    y16 = fdconv_dynamic_conv(args[0].bfloat16(), *args[1:], padding=1)
    assert y16.dtype == torch.bfloat16


def test_lean_op_pointwise_autocast():
    """The 1×1 batched-matmul path runs in the autocast dtype too."""
    tensors, band, scale = _op_inputs(2, 4, 5, 1, 4, 6, 6)
    args = [tensors['x'], *_structures(tensors, band, scale)]
    for stride in (1, 2):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            y = fdconv_dynamic_conv(*args, stride=stride)
        assert y.dtype == torch.bfloat16
        _close(y.float(), fdconv_oracle(*args, stride=stride), 3e-2)


# --------------------------------------------------------------------------------------------------------- FBM
def test_symmetric_lowpass_masks_are_nested_squares():
    masks = lowpass_masks(16, 16, mask_mode='symmetric')
    assert masks.shape == (3, 16, 9)
    counts = [int(m.sum()) for m in masks]
    # max(|kr|, |kc|)/16 <= c: rows |kr| <= 4, 2, 1 (9, 5, 3 rows); columns kc <= 4, 2, 1 (5, 3, 2 columns)
    assert counts == [9 * 5, 5 * 3, 3 * 2]
    assert torch.all(masks[1] <= masks[0]) and torch.all(masks[2] <= masks[1])


def test_release_lowpass_masks_are_nested():
    masks = lowpass_masks(25, 38)
    assert masks.shape == (3, 25, 20)
    assert torch.all(masks[1] <= masks[0]) and torch.all(masks[2] <= masks[1])
    # rows of a 16-row input read grid rows 4i (|k| < 16 exclusive at 1/4: ±3; ≤ 8, ≤ 4 inclusive: ±2, ±1);
    # its 9 rfft columns read grid columns ⌊j·33/9⌋ = 0, 3, 7, 11, 14, 18, …: 5, 3, 2 columns — not square
    assert [int(m.sum()) for m in lowpass_masks(16, 16)] == [7 * 5, 5 * 3, 3 * 2]


def test_fbm_is_identity_with_unit_maps_and_bands_sum_to_input():
    x = torch.randn(2, 3, 11, 8)
    assert torch.equal(frequency_band_mix(x, torch.ones(2, 3, 11, 8)), x)
    # A = 0 keeps only the low band L(1/16); for a constant image that is the image itself
    const = torch.full((1, 1, 8, 8), 3.0)
    _close(frequency_band_mix(const, torch.zeros(1, 3, 8, 8)), const, 1e-6)
    # a pure Nyquist checkerboard lies entirely in the top band B1
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]).remainder(2).float()[None, None] * 2 - 1
    assert frequency_band_mix(checker, torch.zeros(1, 3, 8, 8)).abs().max() < 1e-5


def test_fbm_half_precision_output_dtype():
    x = torch.randn(1, 2, 8, 8).bfloat16()
    y = frequency_band_mix(x, torch.ones(1, 3, 8, 8, dtype=torch.bfloat16) * 0.5)
    assert y.dtype == torch.bfloat16
    _close(y.float(), frequency_band_mix_oracle(x.float(), torch.ones(1, 3, 8, 8) * 0.5), 2e-2)


def test_fbm_bad_arguments():
    x = torch.randn(1, 2, 8, 8)
    with pytest.raises(ValueError, match='att'):
        frequency_band_mix(x, torch.ones(1, 2, 8, 8))
    with pytest.raises(ValueError, match='cutoffs'):
        frequency_band_mix(x, torch.ones(1, 3, 8, 8), cutoffs=(0.1, 0.2, 0.05))
    with pytest.raises(TypeError, match='x'):
        frequency_band_mix(x.numpy(), torch.ones(1, 3, 8, 8))


def test_fourier_basis_is_orthonormal_and_nested():
    from mmdynconv.ops.fdconv_fbm import fourier_basis
    for n, kmax in ((7, 3), (16, 8), (25, 6)):
        u = fourier_basis(n, kmax).double()
        torch.testing.assert_close(u.t() @ u, torch.eye(u.shape[1], dtype=torch.float64), atol=1e-6, rtol=0)
        narrow = fourier_basis(n, 2)
        torch.testing.assert_close(narrow, u[:, :narrow.shape[1]].float())
    assert fourier_basis(16, 8).shape == (16, 16)  # Nyquist contributes its cosine only
