"""UpsamplerUPerHead: mmseg's UPerHead without upsample_cfg; with it, the top-down steps are upsamplers (guided by
the finer lateral), odd sizes, errors."""
import pytest
import torch
from head_helpers import levels, record_fade_calls
from mmengine.registry import MODELS
from mmseg.models.decode_heads import UPerHead

import mmdynconv  # noqa: F401

KWARGS = dict(in_channels=[8, 16, 24, 32], in_index=[0, 1, 2, 3], channels=16, pool_scales=(1, 2, 3, 6),
              dropout_ratio=0.1, num_classes=5, norm_cfg=dict(type='BN', requires_grad=True), align_corners=False)


def head(**kwargs):
    return MODELS.build(dict(type='UpsamplerUPerHead', **KWARGS, **kwargs))


def test_without_upsample_cfg_it_is_mmsegs_head():
    torch.manual_seed(0)
    official = UPerHead(**KWARGS).eval()
    ours = head().eval()
    ours.load_state_dict(official.state_dict())
    feats = levels(KWARGS['in_channels'])
    assert torch.equal(ours(feats), official(feats))


@pytest.mark.parametrize('cfg', [dict(type='fade', up_kernel=5, gating=True),
                                 dict(type='sapa', up_kernel=5, embedding_dim=8, query_mode='encoder'),
                                 dict(type='carafe_torch'), dict(type='dysample')])
def test_top_down_upsamplers_train(cfg):
    torch.manual_seed(0)
    h = head(upsample_cfg=cfg).train()
    assert len(h.upsamplers) == 3
    feats = [f.requires_grad_() for f in levels(KWARGS['in_channels'])]
    y = h(feats)
    assert y.shape == (2, 5, 34, 26)
    y.square().mean().backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats)


def test_guidance_is_the_finer_lateral(monkeypatch):
    torch.manual_seed(0)
    h = head(upsample_cfg=dict(type='fade', up_kernel=3)).eval()
    feats = levels(KWARGS['in_channels'], 32, 32)
    laterals = [conv(x) for conv, x in zip(h.lateral_convs, feats)]
    calls = record_fade_calls(monkeypatch, h.upsamplers)
    h(feats)
    assert [(i, s) for i, s, _ in calls] == [(2, (4, 4)), (1, (8, 8)), (0, (16, 16))]
    assert all(torch.equal(g, laterals[i]) for i, _, g in calls)


def test_upsample_cfg_needs_a_type():
    with pytest.raises(ValueError, match='upsample_cfg needs a type'):
        head(upsample_cfg=dict(up_kernel=5))
