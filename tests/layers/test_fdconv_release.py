"""FDConv exactly as released (Linwei-Chen/FDConv, commit bf7a33d, ``FDConv_detection/mmdet_custom/FDConv.py``).

The fixture ``tests/fixtures/fdconv_release_bf7a33d.pt`` holds facts recorded by running the authors' module (torch
2.13 CPU; its mmcv registry and timm imports replaced by stubs, nothing else changed):

- ``fbm_masks[(H, W)]``: the FBM low-pass masks its forward applies at input size H×W (its cached 64×64 masks,
  nearest-resized), uint8 (3, H, ⌊W/2⌋+1);
- ``band_maps[(Co, Ci, k, n)]``: the band of every FDW coefficient from its ``get_fft2freq`` order, uint8
  (Co·k, ⌊Ci·k/2⌋+1) for small shapes, else the checksum Σ band·(flat position mod 9973);
- ``layers``: five FDConv layers (C = 32 and 64, Ci ≠ Co, 1×1 and 3×3, stride 2, FBM on and off) built by the
  release with every parameter perturbed away from its initialisation (seeded): the release-layout state dict,
  the seeds of the input and of the output gradient, and for eval and train mode the output, the input gradient
  and every parameter gradient, plus the BatchNorm running statistics after the train step.
"""
from pathlib import Path

import pytest
import torch
from torch_support import needs_custom_ops

from mmdynconv.layers import FDConv
from mmdynconv.layers.fdconv_release import convert_release_layer
from mmdynconv.layers.kernel_spatial_modulation import default_local_kernel_size
from mmdynconv.ops import fourier_band_index, frequency_band_mix, frequency_band_mix_oracle
from mmdynconv.ops.fdconv_fbm import lowpass_masks

FIXTURE = torch.load(Path(__file__).parents[1] / 'fixtures' / 'fdconv_release_bf7a33d.pt', weights_only=True)
TOL = 1e-4


def _rel(a, b):
    return float((a.detach() - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.mark.parametrize('size', sorted(FIXTURE['fbm_masks']))
def test_fbm_masks_are_the_release_masks(size):
    assert torch.equal(lowpass_masks(*size), FIXTURE['fbm_masks'][size].float())


def test_release_masks_are_asymmetric_where_the_release_is():
    rows = lowpass_masks(14, 14)[2, :, 0]  # 1/16 cut-off at 14 rows: +1 passes, −1 (row 13) does not
    assert rows[1] == 1 and rows[13] == 0
    mirror = (-torch.arange(14)) % 14
    symmetric = lowpass_masks(14, 14, mask_mode='symmetric')[:, :, 0]
    assert torch.equal(symmetric, symmetric[:, mirror])


@pytest.mark.parametrize('key', sorted(FIXTURE['band_maps']))
def test_band_order_is_the_release_order(key):
    co, ci, k, n = key
    band = fourier_band_index(co * k, ci * k, n)
    recorded = FIXTURE['band_maps'][key]
    if isinstance(recorded, int):
        position = torch.arange(band.numel()) % 9973
        assert int((band.flatten() * position).sum()) == recorded
    else:
        assert torch.equal(band, recorded.long())
        exact = fourier_band_index(co * k, ci * k, n, 'exact')
        assert torch.equal(torch.bincount(exact.flatten()), torch.bincount(band.flatten()))
        assert 0 < int((exact != band).sum()) < band.numel() // 10  # a few tied coefficients change band


def test_local_kernel_size_rule():
    # the release's round(log2(C)/2 + 0.5) // 2 * 2 + 1
    assert [default_local_kernel_size(c) for c in (17, 32, 63, 64, 512, 1023, 1024, 2048)] == [3, 3, 3, 5, 5, 5, 7, 7]
    assert FDConv(32, 32, 3, padding=1, kernel_num=8).ksm_local.weight.shape == (288, 1, 3)


def _layer(case):
    return FDConv(case['ci'], case['co'], case['k'], stride=case['stride'], padding=case['k'] // 2, bias=True,
                  kernel_num=case['n'], use_fbm=case['fbm'])


@pytest.mark.parametrize('index', range(len(FIXTURE['layers'])))
def test_release_state_dict_loads_and_reproduces_the_release(index):
    record = FIXTURE['layers'][index]
    case = record['case']
    layer = _layer(case)
    layer.load_state_dict({k: v.clone() for k, v in record['state_dict'].items()})
    x0 = torch.randn(2, case['ci'], *case['hw'], generator=torch.Generator().manual_seed(record['x_seed']))
    for mode in ('eval', 'train'):
        expected = record[mode]
        layer.train(mode == 'train')
        layer.zero_grad()
        x = x0.clone().requires_grad_()
        y = layer(x)
        y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(record['grad_seed'])))
        assert _rel(y, expected['y']) < TOL, mode
        assert _rel(x.grad, expected['grad_x']) < TOL, mode
        grads = dict(expected['grads'])
        assert convert_release_layer(grads, '', len(layer.fbm.cutoffs) if layer.fbm is not None else 0) == []
        ours = dict(layer.named_parameters())
        assert set(grads) == set(ours)
        for name, grad in grads.items():
            assert _rel(ours[name].grad, grad) < TOL, (mode, name)
    after = {k.replace('KSM_Global.bn.', 'ksm_global.norm.'): v for k, v in record['running_after_train'].items()}
    state = layer.state_dict()
    for name, value in after.items():
        assert _rel(state[name], value) < TOL, name


def test_release_checkpoint_needs_the_release_band_order():
    record = FIXTURE['layers'][0]
    case = record['case']
    layer = FDConv(case['ci'], case['co'], case['k'], padding=1, kernel_num=case['n'], band_order='exact')
    with pytest.raises(RuntimeError, match="band_order='release'"):
        layer.load_state_dict(dict(record['state_dict']))


def test_release_checkpoint_with_fbm_needs_fbm():
    record = FIXTURE['layers'][0]
    case = record['case']
    layer = FDConv(case['ci'], case['co'], case['k'], padding=1, kernel_num=case['n'], use_fbm=False)
    with pytest.raises(RuntimeError, match='FBM'):
        layer.load_state_dict(dict(record['state_dict']))


@pytest.mark.parametrize('mode', ['release', 'symmetric'])
@pytest.mark.parametrize('shape', [(2, 3, 14, 14), (1, 2, 25, 38), (1, 2, 100, 6), (1, 1, 3, 2), (2, 2, 7, 9)])
def test_lean_fbm_matches_masked_ffts(mode, shape):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen)
    att = torch.rand(shape[0], 3, *shape[2:], generator=gen) * 2
    grad = torch.randn(shape, generator=gen)
    outs = []
    for fn in (frequency_band_mix_oracle, frequency_band_mix):
        xl, al = x.clone().requires_grad_(), att.clone().requires_grad_()
        y = fn(xl, al, mask_mode=mode)
        (y * grad).sum().backward()
        outs.append((y, xl.grad, al.grad))
    for lean, ref in zip(outs[1], outs[0]):
        assert _rel(lean, ref) < 2e-5


def test_mask_mode_is_validated():
    with pytest.raises(ValueError, match='mask_mode'):
        frequency_band_mix(torch.randn(1, 1, 8, 8), torch.ones(1, 3, 8, 8), mask_mode='square')
    with pytest.raises(ValueError, match='fbm_mask_mode'):
        FDConv(32, 32, 3, padding=1, kernel_num=8, fbm_mask_mode='square')
    with pytest.raises(ValueError, match='band_order'):
        FDConv(32, 32, 3, padding=1, kernel_num=8, band_order='stable')


@needs_custom_ops
def test_fbm_caches_survive_tracing():
    """The first FBM call at a size may happen inside torch.export: nothing traced may land in the caches."""
    x, att = torch.randn(1, 2, 11, 13), torch.rand(1, 3, 11, 13) * 2

    class Mix(torch.nn.Module):
        def forward(self, x, att):
            return frequency_band_mix(x, att)

    torch.export.export(Mix(), (x, att))
    assert _rel(frequency_band_mix(x, att), frequency_band_mix_oracle(x, att)) < 2e-5
    assert not isinstance(lowpass_masks(11, 13), torch._subclasses.fake_tensor.FakeTensor)
