"""FBM's two algorithms (GEMM and FFT, mmdynconv/ops/fdconv_fbm.py) against the masked-FFT oracle in values and
gradients, at the sizes where the automatic choice switches and at odd sizes; the switch and its forcing; the custom op
(opcheck, torch.compile in one graph, torch.export)."""
import pytest
import torch
from torch_support import needs_custom_ops

from mmdynconv.ops import fdconv_fbm
from mmdynconv.ops.compat import TORCH_VERSION
from mmdynconv.ops.fdconv_fbm import PATH_ENV, choose_path, fbm_cost_ratio, frequency_band_mix
from mmdynconv.ops.fdconv_oracle import frequency_band_mix_oracle

CUTOFFS = (0.25, 0.125, 0.0625)


def _switch_sizes(mask_mode):
    """(n, n + 1) with 'gemm' at n×n and 'fft' at (n+1)×(n+1) on the CPU: where the automatic choice flips."""
    for n in range(2, 400):
        if choose_path(n, n, CUTOFFS, mask_mode, 'cpu', 'auto') != choose_path(n + 1, n + 1, CUTOFFS, mask_mode,
                                                                                 'cpu', 'auto'):
            return n, n + 1
    raise AssertionError('the automatic FBM path never switches below 400×400')


SIZES = [(13, 11), (7, 9), (1, 1), (3, 2), (25, 38), (15, 64), (14, 14), (28, 5)]


def _case(h, w, dtype, b=2, c=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=gen, dtype=dtype).requires_grad_()
    att = (2 * torch.rand(b, len(CUTOFFS), h, w, generator=gen, dtype=dtype)).requires_grad_()
    grad = torch.randn(b, c, h, w, generator=gen, dtype=dtype)
    return x, att, grad


def _rel_err(actual, expected):
    actual, expected = actual.detach(), expected.detach()
    return float((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-12))


def _check_paths_match_oracle(h, w, dtype, mask_mode):
    x, att, grad = _case(h, w, dtype)
    expected_out = frequency_band_mix_oracle(x, att, CUTOFFS, mask_mode)
    expected = (expected_out, *torch.autograd.grad(expected_out, (x, att), grad))
    for path in ('fft', 'gemm'):
        out = frequency_band_mix(x, att, CUTOFFS, mask_mode, path=path)
        got = (out, *torch.autograd.grad(out, (x, att), grad))
        for name, g, e in zip(('output', 'grad x', 'grad att'), got, expected):
            assert g.dtype == dtype and g.shape == e.shape
            err = _rel_err(g.detach(), e.detach())
            assert err < 2e-6, f'{path} {mask_mode} {h}×{w} {dtype}: {name} relative error {err:.2e}'


@pytest.mark.parametrize('mask_mode', ['release', 'symmetric'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_paths_match_oracle_where_the_choice_switches(mask_mode, dtype):
    small, large = _switch_sizes(mask_mode)
    assert choose_path(small, small, CUTOFFS, mask_mode, 'cpu', 'auto') == 'gemm'
    assert choose_path(large, large, CUTOFFS, mask_mode, 'cpu', 'auto') == 'fft'
    for n in (small, large):
        _check_paths_match_oracle(n, n, dtype, mask_mode)


@pytest.mark.parametrize('mask_mode', ['release', 'symmetric'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('h,w', SIZES)
def test_paths_match_oracle_at_odd_sizes(h, w, dtype, mask_mode):
    _check_paths_match_oracle(h, w, dtype, mask_mode)


@pytest.mark.parametrize('width', [1, 2, 7, 10, 76, 128, 304])
def test_gemm_dft_columns_equal_rfft_and_irfft(width, monkeypatch):
    """The FFT path's GEMM transforms of few rfft columns (forward and inverse, Nyquist included) equal torch's
    rfft / irfft with norm='ortho', whichever side of the column crossover."""
    gen = torch.Generator().manual_seed(width)
    x = torch.randn(3, 5, width, generator=gen)
    for thresholds in ((0.0, 0.0), (1e9, 1e9)):   # FFT only, GEMM only
        monkeypatch.setattr(fdconv_fbm, 'GEMM_COLUMNS_FORWARD', thresholds[0])
        monkeypatch.setattr(fdconv_fbm, 'GEMM_COLUMNS_INVERSE', thresholds[1])
        for n_cols in sorted({1, (width // 2 + 2) // 2, width // 2 + 1}):
            rows = fdconv_fbm._rows_spectrum(x, n_cols, gemm=True)
            expected = torch.fft.rfft(x, dim=-1, norm='ortho')[..., :n_cols]
            assert _rel_err(torch.view_as_real(rows), torch.view_as_real(expected)) < 2e-6
            spectrum = torch.fft.fft(expected, dim=-2, norm='ortho')
            padded = torch.zeros(*spectrum.shape[:-1], width // 2 + 1, dtype=spectrum.dtype)
            padded[..., :n_cols] = spectrum
            assert _rel_err(fdconv_fbm._inverse(spectrum, width), torch.fft.irfft2(padded, s=(5, width),
                                                                                     norm='ortho')) < 2e-6


def test_fft_path_gradcheck_float64():
    """The FFT path's backward (recomputed low-passes, masked spectra of the weighted gradients) is the adjoint of its
    forward: float64 finite differences, at a row-asymmetric release size."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 7, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    att = torch.rand(1, 3, 7, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    # the op computes in fp32: finite differences need a large step and fp32 tolerances
    assert torch.autograd.gradcheck(lambda a, b: frequency_band_mix(a, b, path='fft'), (x, att), eps=1e-3,
                                    atol=2e-3, rtol=1e-3)


def test_fft_path_identity_and_partial_gradients():
    x, att, grad = _case(9, 12, torch.float32)
    assert torch.equal(frequency_band_mix(x, torch.ones_like(att), path='fft'), x)
    out = frequency_band_mix(x.detach(), att, path='fft')          # only att needs a gradient
    (g_att,) = torch.autograd.grad(out, (att,), grad)
    out = frequency_band_mix(x, att.detach(), path='fft')          # only x
    (g_x,) = torch.autograd.grad(out, (x,), grad)
    ref = frequency_band_mix_oracle(x, att)
    e_x, e_att = torch.autograd.grad(ref, (x, att), grad)
    assert _rel_err(g_att, e_att) < 2e-6 and _rel_err(g_x, e_x) < 2e-6


def test_fft_path_under_bfloat16_autocast_and_half_inputs():
    x, att, _ = _case(10, 12, torch.float32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = frequency_band_mix(x, att, path='fft')
    assert y.dtype == torch.float32
    assert _rel_err(y, frequency_band_mix_oracle(x, att)) < 2e-6
    y = frequency_band_mix(x.detach().bfloat16(), att.detach().bfloat16(), path='fft')
    assert y.dtype == torch.bfloat16


def _used_path(out):
    """The path the op took: the FFT path saves a complex spectrum for its backward, the GEMM path real coefficients."""
    return 'fft' if out.grad_fn.saved_tensors[-1].is_complex() else 'gemm'


def test_argument_and_environment_force_the_path(monkeypatch):
    small, large = _switch_sizes('release')
    monkeypatch.delenv(PATH_ENV, raising=False)
    for n, auto in ((small, 'gemm'), (large, 'fft')):
        x, att, _ = _case(n, n, torch.float32, b=1, c=1)
        assert _used_path(frequency_band_mix(x, att)) == auto
        assert _used_path(frequency_band_mix(x, att, path='auto')) == auto
        for forced in ('fft', 'gemm'):
            assert _used_path(frequency_band_mix(x, att, path=forced)) == forced
            monkeypatch.setenv(PATH_ENV, forced)
            assert _used_path(frequency_band_mix(x, att)) == forced
            assert _used_path(frequency_band_mix(x, att, path='auto')) == auto  # the argument wins
            monkeypatch.delenv(PATH_ENV)


def test_bad_path_values_are_rejected(monkeypatch):
    x, att, _ = _case(8, 8, torch.float32, b=1, c=1)
    with pytest.raises(ValueError, match=r"path must be one of \('auto', 'fft', 'gemm'\).*'FFT'"):
        frequency_band_mix(x, att, path='FFT')
    monkeypatch.setenv(PATH_ENV, 'fastest')
    with pytest.raises(ValueError, match=f"{PATH_ENV} must be one of .*'fastest'"):
        frequency_band_mix(x, att)
    monkeypatch.setenv(PATH_ENV, '')                                  # empty = unset
    assert frequency_band_mix(x, att).shape == x.shape


def test_cost_model_prefers_fft_for_large_maps(monkeypatch):
    assert fbm_cost_ratio(200, 304) > fbm_cost_ratio(100, 152) > fbm_cost_ratio(25, 38) > fbm_cost_ratio(8, 8)
    assert choose_path(200, 304, path='auto') == 'fft' and choose_path(8, 8, path='auto') == 'gemm'
    # a device type without its own measurement (CUDA so far) keeps the GEMM path; a lower crossover switches earlier
    assert choose_path(200, 304, device='meta', path='auto') == 'gemm'
    assert choose_path(200, 304, device='meta', path='fft') == 'fft'
    monkeypatch.setitem(fdconv_fbm.FFT_CROSSOVER, 'cpu', 0.0)
    assert choose_path(8, 8, path='auto') == 'fft'


def test_double_backward_is_rejected():
    x, att, grad = _case(6, 7, torch.float64)
    (gx,) = torch.autograd.grad(frequency_band_mix(x, att), x, grad, create_graph=True)
    with pytest.raises(NotImplementedError, match='frequency_band_mix: double backward'):
        gx.sum().backward()


@needs_custom_ops
@pytest.mark.parametrize('path', ['fft', 'gemm'])
def test_custom_op_passes_opcheck(path):
    """Schema, fake implementation (output shapes, dtypes and strides, also for channels-last inputs) and autograd
    registration of mmdynconv::frequency_band_mix and its backward op."""
    x, att, grad = _case(9, 12, torch.float32)
    for xs, atts in ((x, att), (x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(), att)):
        torch.library.opcheck(torch.ops.mmdynconv.frequency_band_mix.default, (xs, atts, list(CUTOFFS), 'release',
                                                                                 path))
    out, saved = torch.ops.mmdynconv.frequency_band_mix.default(x, att, list(CUTOFFS), 'release', path)
    assert saved.is_complex() == (path == 'fft')
    torch.library.opcheck(torch.ops.mmdynconv.frequency_band_mix_backward.default,
                          (grad, x.detach(), att.detach(), saved, list(CUTOFFS), 'release', [True, True]))


@needs_custom_ops
@pytest.mark.parametrize('path', ['fft', 'gemm', None])
def test_torch_compile_fullgraph(path, monkeypatch):
    """One graph through FBM (path forced, or chosen inside the op), values and gradients equal to eager; the caches
    are filled by the op's real calls only."""
    monkeypatch.delenv(PATH_ENV, raising=False)
    x, att, grad = _case(11, 10, torch.float32)

    def fn(x, att):
        return frequency_band_mix(x, att, CUTOFFS, path=path)

    expected = fn(x, att)
    expected_grads = torch.autograd.grad(expected, (x, att), grad)
    torch._dynamo.reset()
    out = torch.compile(fn, fullgraph=True, backend='aot_eager')(x, att)
    assert torch.equal(out, expected)
    for g, e in zip(torch.autograd.grad(out, (x, att), grad), expected_grads):
        assert torch.equal(g, e)
    u_h, u_w, bands = fdconv_fbm._plan(11, 10, CUTOFFS, 'release', x.device)   # cached entries: real tensors
    masks = fdconv_fbm._fft_masks(11, 10, CUTOFFS, 'release', x.device)
    assert not any(isinstance(t, torch._subclasses.FakeTensor) for t in (u_h, u_w, masks, bands[0].partner_r))


@pytest.mark.skipif(TORCH_VERSION < (2, 5), reason='torch.export of FBM is tested from torch 2.5')
@pytest.mark.parametrize('path', ['fft', 'auto'])
def test_fft_path_survives_export_tracing(path, monkeypatch):
    """The first FFT-path call at a size (forced, or chosen by cost at a large map) may happen inside torch.export:
    the trace works and nothing traced lands in the caches, so later eager calls still equal the oracle."""
    monkeypatch.delenv(PATH_ENV, raising=False)
    size = (11, 13) if path == 'fft' else _switch_sizes('release')[1:] * 2
    x, att = torch.randn(1, 2, *size), torch.rand(1, 3, *size) * 2

    class Mix(torch.nn.Module):
        def forward(self, x, att):
            return frequency_band_mix(x, att, path=path)

    fdconv_fbm._fft_masks.cache_clear()
    torch.export.export(Mix(), (x, att))
    assert fdconv_fbm._fft_masks.cache_info().currsize == 0   # the op is one node: nothing built while tracing
    out = frequency_band_mix(x.requires_grad_(), att, path=path)
    assert _used_path(out) == 'fft'
    assert _rel_err(out, frequency_band_mix_oracle(x, att)) < 2e-6
