"""UpsamplerFPN: parity with mmdet's / mmseg's FPN, one-line upsampler swaps, both scopes, errors."""
import pytest
import torch
from mmengine.registry import MODELS, DefaultScope

import mmdynconv  # noqa: F401
from mmdynconv.layers import DDFUpsample
from mmdynconv.models.necks import UpsamplerFPN

IN_CHANNELS = [8, 16, 32, 64]


def pyramid(size=64, batch=2):
    return [torch.randn(batch, c, size // 2 ** i, size // 2 ** i) for i, c in enumerate(IN_CHANNELS)]


@pytest.mark.parametrize('reference', ['mmdet', 'mmseg'])
@pytest.mark.parametrize('kwargs', [
    dict(num_outs=5),
    dict(num_outs=5, add_extra_convs='on_input'),
    dict(num_outs=5, start_level=1, add_extra_convs='on_output', relu_before_extra_convs=True),
    dict(num_outs=4, norm_cfg=dict(type='BN'), act_cfg=dict(type='ReLU')),
    dict(num_outs=3, end_level=2),
])
@pytest.mark.parametrize('upsample_cfg', [None, dict(type='nearest')])
def test_parity_with_official_fpn(reference, kwargs, upsample_cfg):
    if reference == 'mmdet':
        from mmdet.models.necks import FPN
    else:
        from mmseg.models.necks import FPN
        if 'end_level' in kwargs:  # mmseg's end_level is exclusive, mmdet's (and ours) inclusive
            kwargs = dict(kwargs, end_level=kwargs['end_level'] + 1)
    official = FPN(IN_CHANNELS, 16, **kwargs).eval()
    official.init_weights()
    if 'end_level' in kwargs and reference == 'mmseg':
        kwargs = dict(kwargs, end_level=kwargs['end_level'] - 1)
    ours = UpsamplerFPN(IN_CHANNELS, 16, **kwargs, **({} if upsample_cfg is None else dict(upsample_cfg=upsample_cfg)))
    ours.load_state_dict(official.state_dict())
    ours.eval()
    inputs = pyramid()
    with torch.no_grad():
        expected, got = official(inputs), ours(inputs)
    assert len(expected) == len(got)
    for e, g in zip(expected, got):
        assert torch.equal(e, g)


def test_parity_odd_sizes_without_type():
    from mmdet.models.necks import FPN
    official = FPN(IN_CHANNELS, 16, 5)
    ours = UpsamplerFPN(IN_CHANNELS, 16, 5, upsample_cfg=dict(mode='nearest'))
    ours.load_state_dict(official.state_dict())
    inputs = [torch.randn(1, c, s, t) for c, (s, t) in zip(IN_CHANNELS, [(33, 47), (17, 24), (9, 12), (5, 6)])]
    for e, g in zip(official(inputs), ours(inputs)):
        assert torch.equal(e, g)


@pytest.mark.parametrize('upsample_cfg', [
    dict(type='ddf_up'), dict(type='ddf_up', kernel_size=5, heads=2, kernel_combine='add'), dict(type='nearest'),
    dict(type='bilinear'), dict(type='deconv'), dict(type='deconv', kernel_size=3),
    dict(type='pixel_shuffle', upsample_kernel=3)])
def test_upsampler_swaps(upsample_cfg):
    neck = UpsamplerFPN(IN_CHANNELS, 16, 5, upsample_cfg=upsample_cfg)
    neck.init_weights()
    inputs = pyramid()
    outs = neck(inputs)
    assert [o.shape[-1] for o in outs] == [64, 32, 16, 8, 4]
    sum(o.sum() for o in outs).backward()
    if upsample_cfg['type'] == 'ddf_up':
        assert all(isinstance(m, DDFUpsample) for m in neck.upsamplers) and len(neck.upsamplers) == 3
        assert neck.upsamplers[0].kernel_size == upsample_cfg.get('kernel_size', 3)


def test_ddf_up_odd_sizes_are_cropped():
    neck = UpsamplerFPN(IN_CHANNELS, 16, 5, upsample_cfg=dict(type='ddf_up'))
    inputs = [torch.randn(1, c, s, t) for c, (s, t) in zip(IN_CHANNELS, [(33, 47), (17, 24), (9, 12), (5, 6)])]
    assert [tuple(o.shape[2:]) for o in neck(inputs)][:4] == [(33, 47), (17, 24), (9, 12), (5, 6)]


def test_carafe_builds():
    import mmcv.ops  # noqa: F401  ('carafe' is registered by mmcv.ops; its kernel is CUDA-only)
    neck = UpsamplerFPN(IN_CHANNELS, 16, 5, upsample_cfg=dict(type='carafe', up_kernel=5))
    assert type(neck.upsamplers[0]).__name__ == 'CARAFEPack'


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_builds_in_scope(scope):
    import importlib
    importlib.import_module(f'{scope}.registry')
    with DefaultScope.overwrite_default_scope(scope):
        from mmengine.registry import MODELS as root
        registry = importlib.import_module(f'{scope}.registry').MODELS
        neck = registry.build(dict(type='UpsamplerFPN', in_channels=IN_CHANNELS, out_channels=16, num_outs=4,
                                   upsample_cfg=dict(type='ddf_up')))
    assert isinstance(neck, UpsamplerFPN) and root.get('UpsamplerFPN') is UpsamplerFPN


def test_bad_arguments():
    with pytest.raises(ValueError, match='num_outs must be >= 4'):
        UpsamplerFPN(IN_CHANNELS, 16, 3)
    with pytest.raises(ValueError, match='add_extra_convs must be'):
        UpsamplerFPN(IN_CHANNELS, 16, 5, add_extra_convs='on_top')
    with pytest.raises(KeyError):
        UpsamplerFPN(IN_CHANNELS, 16, 5, upsample_cfg=dict(type='no_such_upsampler'))
    with pytest.raises(ValueError, match='expected 4 input levels'):
        UpsamplerFPN(IN_CHANNELS, 16, 5)(pyramid()[:3])
    assert MODELS.get('UpsamplerFPN') is UpsamplerFPN


# --- guided upsamplers (takes_guidance): the finer level's lateral is the guidance --------------------------------

ODD = [(33, 47), (17, 24), (9, 12), (5, 6)]


def top_down_by_hand(neck, inputs):
    """The neck's outputs for its levels, each guided upsampler called with the lateral it must get."""
    from mmdynconv.models.necks.upsampler_fpn import guidance_of_size
    laterals = [conv(x) for conv, x in zip(neck.lateral_convs, inputs)]
    for i in range(len(laterals) - 1, 0, -1):
        x, target = laterals[i], laterals[i - 1]
        up = neck.upsamplers[i - 1](x, guidance_of_size(target, 2 * x.shape[2], 2 * x.shape[3]))
        laterals[i - 1] = target + up[:, :, :target.shape[2], :target.shape[3]]
    return [conv(lat) for conv, lat in zip(neck.fpn_convs, laterals)]


@pytest.mark.parametrize('upsample_cfg', [dict(type='fade'), dict(type='fade', gating=False, up_kernel=3),
                                          dict(type='ddf_up', guidance_channels=16, guidance_at='output'),
                                          dict(type='sapa', embedding_dim=8),
                                          dict(type='sapa', up_kernel=3, query_mode='gated', embedding_dim=8)],
                         ids=['fade', 'fade-no-gate', 'ddf_up-guided', 'sapa', 'sapa-gated'])
@pytest.mark.parametrize('sizes', [None, ODD], ids=['even', 'odd'])
def test_guided_upsamplers_get_the_lateral(upsample_cfg, sizes):
    neck = UpsamplerFPN(IN_CHANNELS, 16, 5, upsample_cfg=upsample_cfg)
    neck.init_weights()
    assert all(up.takes_guidance for up in neck.upsamplers)
    inputs = pyramid() if sizes is None else [torch.randn(2, c, *s) for c, s in zip(IN_CHANNELS, sizes)]
    outs = neck(inputs)
    assert [tuple(o.shape[2:]) for o in outs][:4] == [tuple(x.shape[2:]) for x in inputs]
    for got, expected in zip(outs, top_down_by_hand(neck, inputs)):
        assert torch.equal(got, expected)
    sum(o.sum() for o in outs).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in neck.upsamplers.parameters())


class GuidanceProbe(torch.nn.Module):
    """A guided ×2 upsampler that records the guidance it gets and upsamples by nearest neighbour."""
    takes_guidance = True

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, guidance):
        self.seen.append(guidance)
        return torch.nn.functional.interpolate(x, scale_factor=2.0)


def test_guidance_is_the_unsummed_lateral_extended_by_its_last_row_and_column():
    neck = UpsamplerFPN(IN_CHANNELS, 16, 4, upsample_cfg=dict(type='nearest'))
    neck.upsamplers = torch.nn.ModuleList([GuidanceProbe() for _ in range(3)])
    inputs = [torch.randn(1, c, *s) for c, s in zip(IN_CHANNELS, ODD)]
    with torch.no_grad():
        neck(inputs)
        laterals = [conv(x) for conv, x in zip(neck.lateral_convs, inputs)]
    for level, probe in enumerate(neck.upsamplers):   # upsamplers[level] brings level + 1 to level's size
        (guidance,) = probe.seen
        h, w = ODD[level + 1]
        assert tuple(guidance.shape) == (1, 16, 2 * h, 2 * w)
        lateral = laterals[level]
        th, tw = lateral.shape[2:]
        assert torch.equal(guidance[:, :, :th, :tw], lateral)
        assert torch.equal(guidance[:, :, th:, :tw], lateral[:, :, -1:].expand(-1, -1, 2 * h - th, -1))
        assert torch.equal(guidance[:, :, :, tw:], guidance[:, :, :, tw - 1:tw].expand(-1, -1, -1, 2 * w - tw))


def test_unguided_ddf_up_is_called_without_guidance():
    neck = UpsamplerFPN(IN_CHANNELS, 16, 4, upsample_cfg=dict(type='ddf_up', guidance_channels=16))
    assert not any(up.takes_guidance for up in neck.upsamplers)   # guidance_at='input' does not fit the protocol
    with pytest.raises(ValueError, match=r'ddf_up: guidance must have shape'):
        neck(pyramid())
