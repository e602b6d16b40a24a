"""End-to-end ONNX export of a demo detector and a demo segmenter (both with DDF-Up FPNs) at 64×64; ONNX Runtime must
match PyTorch within 1e-4 of each output's largest magnitude (measured ~1e-6). FDConv is covered layer by layer in
test_export_layers.py: exporting the FDConv demo segmenter (48 FDConv layers) takes minutes (docs/deploy.md)."""
import os.path as osp

import pytest
import torch
from tool_runner import run_tool

from mmdynconv.deploy.cli import export_config
from mmdynconv.deploy.tensor_forward import build_model

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')


def _fresh_checkpoint(config, path):
    torch.manual_seed(0)
    model, _ = build_model(config)
    with torch.no_grad():  # a trained-looking network: BN statistics and FDConv/FBM attentions away from their init
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.02)
                if name.endswith('running_var'):
                    t.abs_()
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.slow
def test_demo_detector_through_the_tool(tmp_path):
    config = 'configs/demo/faster-rcnn_tiny-r50_ddf-up-fpn_shapes.py'
    ckpt = _fresh_checkpoint(config, str(tmp_path / 'det.pth'))
    out = str(tmp_path / 'det.onnx')
    proc = run_tool('tools/deploy/export_onnx.py', config, ckpt, '--out', out, '--shape', '64', '64')
    report = dict(line.split(': ', 1) for line in proc.stdout.splitlines() if ': ' in line)
    assert report['kind'] == 'two_stage' and report['outputs'] == '15'  # 5 FPN levels, RPN scores, RPN deltas
    assert float(report['max_rel']) <= 1e-4, report
    assert osp.isfile(out)


@pytest.mark.slow
def test_demo_segmenter(tmp_path):
    config = 'configs/demo/semfpn_tiny-r50_ddf-up-fpn_shapes.py'
    ckpt = _fresh_checkpoint(config, str(tmp_path / 'seg.pth'))
    report = export_config(config, ckpt, str(tmp_path / 'seg.onnx'), shape=(64, 64))
    assert report['kind'] == 'segmentor' and report['outputs'] == 1
    assert report['max_rel'] <= 1e-4, report


def test_tool_rejects_a_missing_checkpoint(tmp_path):
    proc = run_tool('tools/deploy/export_onnx.py', 'configs/demo/semfpn_tiny-r50-fdconv_shapes.py',
                    str(tmp_path / 'none.pth'), '--out', str(tmp_path / 'x.onnx'), check=False)
    assert proc.returncode != 0 and 'does not exist' in proc.stdout
