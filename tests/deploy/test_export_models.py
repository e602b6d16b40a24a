"""End-to-end ONNX export at 64×64 of the DDF-Up demo detector and segmenter (ONNX Runtime within 1e-4 of PyTorch,
relative to each output's largest magnitude; measured ~1e-6) and of the FDConv demo segmenter (within 5e-4: through
its 48 FDConv layers fp32 rounding alone, PyTorch's against float64, reaches ~1e-4; the test prints both figures;
docs/deploy.md)."""
import os.path as osp

import pytest
import torch
from tool_runner import run_tool
from torch_support import needs_export

from mmdynconv.deploy.cli import example_inputs, export_config
from mmdynconv.deploy.tensor_forward import TensorForward, build_model

pytestmark = needs_export

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


def _calibrated_checkpoint(config, path):
    """A trained-looking network whose activations stay O(1): every parameter moved off its initialisation by
    N(0, 0.005²), then the BatchNorm statistics recomputed on random images. (Perturbed statistics of a random network,
    or N(0, 0.02²) on the KSM / FBM parameters of 48 FDConv layers, let it amplify some inputs by 1e12 or more, which
    hides export errors behind rounding.)"""
    torch.manual_seed(0)
    model, _ = build_model(config)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.005)
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        wrapped = TensorForward(model).train()  # the whole network, decode head included
        for _ in range(4):
            wrapped(torch.randn(8, 3, 64, 64))
    torch.save(model.state_dict(), path)
    return path


def _fp32_rounding(config, checkpoint, shape):
    """Largest |fp32 − float64| of the eager tensor forward on the export's example input, relative to the largest
    |output|: the network's own rounding, the scale the ONNX Runtime difference is judged against."""
    model, cfg = build_model(config, checkpoint)
    wrapper = TensorForward(model).eval()
    (image,) = example_inputs(wrapper, cfg, shape)
    with torch.no_grad():
        y32 = wrapper(image)[0]
        y64 = wrapper.double()(image.double())[0]
    return ((y32.double() - y64).abs().max() / y64.abs().max()).item()


@pytest.mark.slow
def test_fdconv_demo_segmenter(tmp_path):
    """Run with ``pytest -s`` to see the report (docs/deploy.md quotes it)."""
    config = 'configs/demo/semfpn_tiny-r50-fdconv_shapes.py'
    ckpt = _calibrated_checkpoint(config, str(tmp_path / 'seg.pth'))
    report = export_config(config, ckpt, str(tmp_path / 'seg.onnx'), shape=(64, 64))
    report['eager_fp32_vs_fp64_rel'] = _fp32_rounding(config, ckpt, (64, 64))
    print(''.join(f'\n{key}: {value}' for key, value in report.items() if key != 'onnx'))
    assert report['kind'] == 'segmentor' and 'DFT' not in report['onnx_ops'].split()
    assert report['max_rel'] <= 5e-4, report


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
