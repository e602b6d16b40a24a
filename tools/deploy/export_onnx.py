"""Export a config's network (DDF / DDF-Up / FDConv layers included) to ONNX that stock ONNX Runtime runs.

    python tools/deploy/export_onnx.py CONFIG CHECKPOINT --out model.onnx [--shape H W] [--batch B] [--opset 18]
                                       [--no-check] [--optimize]

CHECKPOINT: a Runner checkpoint or a state dict. The graph is the tensor forward of mmdynconv/deploy/tensor_forward.py
(no NMS, no resizing; the input is the preprocessed image) at a static shape: --shape, or the test pipeline's
Resize scale. Unless --no-check, the file is run by ONNX Runtime on a random input and compared with PyTorch.
See docs/deploy.md.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # run from a clone

from mmdynconv.deploy.cli import export_config  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='config file')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--out', required=True, help='ONNX file to write')
    p.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'), help='input size (default: test Resize scale)')
    p.add_argument('--batch', type=int, default=1, help='batch size of the static graph (>= 1)')
    p.add_argument('--opset', type=int, default=18, help='ONNX opset (>= 18)')
    p.add_argument('--no-check', action='store_true', help='skip the ONNX Runtime vs PyTorch comparison')
    p.add_argument('--optimize', action='store_true',
                   help="run the exporter's graph optimiser (off by default, see docs/deploy.md)")
    args = p.parse_args(argv)
    if not osp.isfile(args.checkpoint):
        p.error(f'checkpoint {args.checkpoint!r} does not exist')
    if args.shape is not None and min(args.shape) < 1:
        p.error(f'--shape must be two positive ints, got {args.shape}')
    if args.batch < 1 or args.opset < 18:
        p.error(f'--batch must be >= 1 and --opset >= 18, got {args.batch}, {args.opset}')
    return args


def main(argv=None):
    args = parse_args(argv)
    report = export_config(args.config, args.checkpoint, args.out, args.shape, args.batch, args.opset,
                           check=not args.no_check, optimize=args.optimize)
    for key, value in report.items():
        print(f'{key}: {value}')
    return report


if __name__ == '__main__':
    main()
