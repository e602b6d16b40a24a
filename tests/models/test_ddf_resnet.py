"""DDF-ResNet by config: the bottleneck's dcn slot puts DDF in conv2 of all 16 bottlenecks of ResNet-50."""
import pytest
import torch
import torch.nn as nn

import mmdynconv  # noqa: F401
from mmdynconv.layers import DDFConv


def build(scope):
    if scope == 'mmdet':
        from mmdet.models.backbones import ResNet as Backbone
    else:
        from mmseg.models.backbones import ResNetV1c as Backbone
    return Backbone(depth=50, base_channels=16, stem_channels=16, norm_cfg=dict(type='BN'),
                    dcn=dict(type='DDF', kernel_combine='add', fallback_on_stride=False),
                    stage_with_dcn=(True, True, True, True))


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_published_placement(scope):
    net = build(scope)
    ddf = {name: m for name, m in net.named_modules() if isinstance(m, DDFConv)}
    assert len(ddf) == 16
    assert all(name.endswith('.conv2') for name in ddf)
    assert [m.stride for m in ddf.values()].count(2) == 3  # first block of stages 2-4
    assert all(m.kernel_combine == 'add' for m in ddf.values())
    plain = [name for name, m in net.named_modules() if isinstance(m, nn.Conv2d) and '.conv2.' not in name]
    assert any(n.endswith('conv1') for n in plain) and any(n.endswith('conv3') for n in plain)
    assert any('downsample' in n for n in plain) and any(n.startswith('stem') or n == 'conv1' for n in plain)
    net.init_weights()
    outs = net(torch.randn(2, 3, 65, 47))
    assert [tuple(o.shape[1:]) for o in outs] == [(64, 17, 12), (128, 9, 6), (256, 5, 3), (512, 3, 2)]
    sum(o.mean() for o in outs).backward()
