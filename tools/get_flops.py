"""Count parameters and FLOPs of a model from a config, with mmdynconv's ops included.

mmengine's ``FlopAnalyzer`` (JIT-trace based; one multiply-accumulate = one FLOP; element-wise ops not counted)
extended with handles for mmdynconv's custom ops (``mmdynconv.utils.complexity``), so DDF and DDF-Up are counted.

    python tools/get_flops.py CONFIG [--shape H W]      # whole model (tensor-mode forward), random input
    python tools/get_flops.py --compare                 # ResNet-50 vs DDF-ResNet-50; Faster R-CNN +/- DDF-Up
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone without installing

import torch  # noqa: E402
from mmengine.analysis import parameter_count  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import DefaultScope, init_default_scope  # noqa: E402

from mmdynconv.utils.complexity import flop_analyzer  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def build_model(cfg):
    init_default_scope(cfg.default_scope)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        from mmengine.registry import MODELS
        return MODELS.build(cfg.model).eval()


def _data_samples(cfg, h, w):
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w),
                scale_factor=(1.0, 1.0))
    if cfg.default_scope == 'mmseg':
        from mmseg.structures import SegDataSample
        return [SegDataSample(metainfo=meta)]
    from mmdet.structures import DetDataSample
    return [DetDataSample(metainfo=meta)]


def model_complexity(cfg, h, w, part=None):
    """(params, flops, flops by operator) of the whole model (``part=None``) or of ``model.<part>``."""
    model = build_model(cfg)
    x = torch.randn(1, 3, h, w)
    if part is not None:
        module = getattr(model, part)
        inputs = (x,)
    else:
        module, samples, tensor_forward = model, _data_samples(cfg, h, w), model._forward
        module.forward = lambda inputs: tensor_forward(inputs, samples)  # mmdet/mmseg 'tensor' mode
        inputs = (x,)
    with torch.no_grad():
        analyzer = flop_analyzer(module, inputs)
        flops = analyzer.total()
    return parameter_count(getattr(model, part) if part else model)[''], flops, analyzer.by_operator()


def compare():
    det = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
    rows = []
    base = Config.fromstring(f'_base_ = {det!r}', '.py')
    ddf_backbone = Config.fromfile(osp.join(ROOT, 'configs/ddf/faster-rcnn_ddf-r50_fpn_1x_coco.py'))
    rows.append(('ResNet-50 backbone (mmdet, no fc)', 224, 224, *model_complexity(base, 224, 224, 'backbone')))
    rows.append(('DDF-ResNet-50 backbone (mul)', 224, 224, *model_complexity(ddf_backbone, 224, 224, 'backbone')))
    ddf_up = Config.fromfile(osp.join(ROOT, 'configs/ddf/faster-rcnn_r50_ddf-up-fpn_1x_coco.py'))
    rows.append(('Faster R-CNN R50-FPN (nearest)', 800, 1216, *model_complexity(base, 800, 1216)))
    rows.append(('Faster R-CNN R50-FPN (DDF-Up)', 800, 1216, *model_complexity(ddf_up, 800, 1216)))
    print(f'| model | input | params (M) | GFLOPs | of which DDF op |\n|---|---|---|---|---|')
    for name, h, w, params, flops, ops in rows:
        print(f'| {name} | {h}x{w} | {params / 1e6:.2f} | {flops / 1e9:.2f} | {ops.get("ddf", 0) / 1e9:.2f} |')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', nargs='?', help='config file')
    p.add_argument('--shape', type=int, nargs=2, default=[800, 1216], metavar=('H', 'W'), help='input size')
    p.add_argument('--part', help="count only this submodule, e.g. 'backbone' (input: the image)")
    p.add_argument('--compare', action='store_true', help='print the ResNet-50 / Faster R-CNN comparison table')
    args = p.parse_args(argv)
    if args.compare:
        return compare()
    if args.config is None:
        p.error('give a CONFIG or --compare')
    if min(args.shape) < 32:
        p.error(f'--shape must be at least 32x32, got {args.shape}')
    params, flops, ops = model_complexity(Config.fromfile(args.config), *args.shape, args.part)
    print(f'{args.config} at {args.shape[0]}x{args.shape[1]}: params {params / 1e6:.2f} M, '
          f'FLOPs {flops / 1e9:.2f} G')
    for op, n in ops.most_common():
        print(f'  {op:24s} {n / 1e9:8.3f} G')


if __name__ == '__main__':
    main()
