"""tools/convert_fdconv_checkpoint.py and tools/analyze_fdconv_frequency.py."""
import importlib.util
import os.path as osp
import re

import pytest
import torch

TESTS = osp.dirname(osp.dirname(osp.abspath(__file__)))  # tests/


def _tool(name):
    """Import tools/<name>.py as a module (the converter and the analysis run in-process)."""
    spec = importlib.util.spec_from_file_location(name, osp.join(osp.dirname(TESTS), 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(capsys, name, *args):
    code = _tool(name).main(list(args))
    return code, capsys.readouterr().out


def _resnet_state(deep_stem=False):
    from mmdet.models.backbones import ResNet
    return dict(ResNet(depth=50, base_channels=16, stem_channels=32, deep_stem=deep_stem).state_dict())


def _mmpretrain_layout(state):
    """mmpretrain keys: 'backbone.' prefix, deep stem as ConvModules (stem.j.conv / stem.j.bn), 'head.fc'."""
    out = {}
    for key, value in state.items():
        match = re.match(r'^stem\.(\d+)\.(.+)$', key)
        if match:
            index = int(match.group(1))
            key = f'stem.{index // 3}.{"conv" if index % 3 == 0 else "bn"}.{match.group(2)}'
        out['backbone.' + key] = value
    out['head.fc.weight'] = torch.randn(10, 512)
    out['head.fc.bias'] = torch.randn(10)
    return {'meta': {'epoch': 100}, 'state_dict': out}


@pytest.mark.slow
@pytest.mark.parametrize('layout', ['torchvision', 'mmpretrain'])
def test_converter_layouts(tmp_path, capsys, layout):
    if layout == 'torchvision':
        plain = _resnet_state()
        source = dict(plain, **{'fc.weight': torch.randn(10, 512), 'fc.bias': torch.randn(10)})
    else:
        plain = _resnet_state(deep_stem=True)
        source = _mmpretrain_layout(plain)
    src, dst = tmp_path / 'src.pth', tmp_path / 'dst.pth'
    torch.save(source, src)
    code, out = _run(capsys, 'convert_fdconv_checkpoint', str(src), str(dst))
    assert code == 0
    assert f'source layout: {layout}' in out
    # base width 16: stage-1 convs have 16 channels and stay plain under the published rule (min(Ci, Co) > 16)
    assert 'converted: 39 conv weights' in out and '9 bottleneck convs kept plain' in out
    assert re.search(r'skipped: +2 source keys', out) and '0 other backbone keys' in out and 'unexpected: 0' in out
    converted = torch.load(dst, weights_only=True)['state_dict']
    from mmdynconv.ops.fdconv_spectrum import spectrum_to_weight
    weight = spectrum_to_weight(converted['layer4.2.conv2.spectrum'], 128, 128, 3)
    torch.testing.assert_close(weight, plain['layer4.2.conv2.weight'], rtol=0, atol=1e-5)
    assert 'layer1.0.conv2.weight' in converted and 'layer1.0.conv2.spectrum' not in converted
    assert all(not k.startswith(('backbone.', 'fc.', 'head.')) for k in converted)


@pytest.mark.slow
def test_converter_reports_problems(tmp_path, capsys):
    state = _resnet_state()
    del state['layer2.0.bn1.weight']
    state['layer9.extra'] = torch.zeros(1)
    src = tmp_path / 'src.pth'
    torch.save(state, src)
    code, out = _run(capsys, 'convert_fdconv_checkpoint', str(src), str(tmp_path / 'dst.pth'))
    assert code == 1
    assert '1 other backbone keys: layer2.0.bn1.weight' in out and 'unexpected: 1: layer9.extra' in out


def test_converter_release_checkpoint(tmp_path, capsys):
    """A detector checkpoint in the authors' layout: every FDConv layer renamed, every other key kept."""
    from pathlib import Path

    from mmdynconv.layers import FDConv
    fixture = torch.load(Path(TESTS) / 'fixtures' / 'fdconv_release_bf7a33d.pt', weights_only=True)
    record = fixture['layers'][1]  # 3×3, Ci 32 -> Co 64, stride 2, FBM
    source = {f'backbone.layer2.0.conv2.{k}': v for k, v in record['state_dict'].items()}
    source['backbone.layer2.0.bn2.weight'] = torch.ones(64)
    source['neck.lateral_convs.0.conv.weight'] = torch.randn(8, 64, 1, 1)
    src, dst = tmp_path / 'release.pth', tmp_path / 'ours.pth'
    torch.save({'state_dict': source, 'meta': {}}, src)
    code, out = _run(capsys, 'convert_fdconv_checkpoint', str(src), str(dst))
    assert code == 0 and 'source layout: release' in out and 'converted: 1 release FDConv layers' in out
    converted = torch.load(dst, weights_only=True)
    state = converted['state_dict']
    assert converted['meta']['band_order'] == 'release'
    assert 'backbone.layer2.0.bn2.weight' in state and 'neck.lateral_convs.0.conv.weight' in state
    case = record['case']
    layer = FDConv(case['ci'], case['co'], 3, stride=2, padding=1, kernel_num=case['n']).eval()
    prefix = 'backbone.layer2.0.conv2.'
    layer.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    x = torch.randn(2, case['ci'], *case['hw'], generator=torch.Generator().manual_seed(record['x_seed']))
    expected = record['eval']['y']
    assert float((layer(x) - expected).abs().max() / expected.abs().max()) < 1e-4


def test_frequency_analysis(tmp_path, capsys):
    png = tmp_path / 'freq.png'
    _, out = _run(capsys, 'analyze_fdconv_frequency', '--in-channels', '24', '--out-channels', '32',
                  '--kernel-num', '8', '--out', str(png))
    fd, cc = map(float, re.search(r'spatial.*FDConv ([\d.]+) +CondConv split ([\d.]+)', out).groups())
    tiled_fd = float(re.search(r'tiled.*FDConv ([\d.]+)', out).group(1))
    assert fd < cc and tiled_fd < 1e-3  # disjoint bands: orthogonal spectra in FDW's own domain
    assert png.stat().st_size > 10_000


def test_frequency_analysis_from_checkpoint(tmp_path, capsys):
    from mmdynconv.layers import FDConv
    layer = FDConv(24, 32, 3, padding=1, kernel_num=8)
    path = tmp_path / 'layer.pth'
    torch.save({f'backbone.block.{k}': v for k, v in layer.state_dict().items()}, path)
    _, out = _run(capsys, 'analyze_fdconv_frequency', '--checkpoint', str(path), '--out', str(tmp_path / 'f.png'))
    assert 'layer: block  (Co=32, Ci=24, k=3, n=8)' in out

