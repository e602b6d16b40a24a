"""Generate the synthetic demo datasets in the real COCO and ADE20K on-disk formats.

Scenes are coloured shapes of varied sizes, colours and overlaps on textured backgrounds. The output is deterministic
given the options and is read unmodified by mmdet's ``CocoDataset`` / ``CocoMetric`` and mmseg's ``ADE20KDataset`` /
``IoUMetric``::

    <out>/coco/annotations/instances_{train,val}2017.json     boxes + polygon instance masks
    <out>/coco/{train,val}2017/*.jpg
    <out>/ade20k/images/{training,validation}/*.jpg
    <out>/ade20k/annotations/{training,validation}/*.png      ADE20K label convention

Examples::

    python tools/generate_demo_data.py --out data/demo --seed 0
    # a different detection task (other shapes, colours, scales, seed), e.g. for pretraining a backbone
    python tools/generate_demo_data.py --out data/pretrain --task det --seed 1 \\
        --shapes hexagon,cross,ellipse,arrow --palette saturated --min-size 12 --max-size 44

The logic lives in :mod:`mmdynconv.utils.demo_data`.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone without installing

from mmdynconv.utils.demo_data import ALL_SHAPES, EVAL_SHAPES, PALETTES, TASKS, DemoDataSpec, generate  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='data/demo', help='output folder (default: data/demo)')
    p.add_argument('--seed', type=int, default=0, help='random seed (>= 0); the output depends on nothing else')
    p.add_argument('--task', choices=TASKS, default='all',
                   help='det: COCO detection/instances, seg: ADE20K semantic segmentation')
    p.add_argument('--num-train', type=int, default=600, help='training images per dataset (>= 1)')
    p.add_argument('--num-val', type=int, default=100, help='validation images per dataset (>= 1)')
    p.add_argument('--size', type=int, default=128, help='image side in pixels (64..2048)')
    p.add_argument('--min-objects', type=int, default=2, help='objects per image, lower bound (>= 1)')
    p.add_argument('--max-objects', type=int, default=5, help='objects per image, upper bound (>= --min-objects)')
    p.add_argument('--min-size', type=int, default=20, help='smallest object diameter in pixels (>= 8)')
    p.add_argument('--max-size', type=int, default=56,
                   help='largest object diameter in pixels (>= --min-size, <= --size)')
    p.add_argument('--shapes', default=','.join(EVAL_SHAPES),
                   help=f'comma-separated object classes from {",".join(ALL_SHAPES)} (default: '
                        f'{",".join(EVAL_SHAPES)}; others need --task det)')
    p.add_argument('--palette', choices=PALETTES, default='uniform',
                   help='object colours: uniform RGB (default) or fully saturated hues')
    args = p.parse_args(argv)
    spec = DemoDataSpec(seed=args.seed, task=args.task, num_train=args.num_train, num_val=args.num_val,
                        size=args.size, min_objects=args.min_objects, max_objects=args.max_objects,
                        min_size=args.min_size, max_size=args.max_size, shapes=tuple(args.shapes.split(',')),
                        palette=args.palette)
    for msg in spec.errors(name=lambda field: '--' + field.replace('_', '-')):
        p.error(msg)
    if osp.isfile(args.out):
        p.error(f'--out must be a folder, but {args.out!r} is a file')
    return args.out, spec


def main(argv=None):
    out, spec = parse_args(argv)
    generate(out, spec)


if __name__ == '__main__':
    sys.exit(main())
