"""Generate the synthetic demo datasets in the real COCO and ADE20K on-disk formats.

Scenes are coloured shapes (circle, rectangle, triangle, star) of varied sizes, colours and overlaps on textured
backgrounds. The output is deterministic given ``--seed`` and is read unmodified by mmdet's ``CocoDataset`` /
``CocoMetric`` and mmseg's ``ADE20KDataset`` / ``IoUMetric``::

    <out>/coco/annotations/instances_{train,val}2017.json     boxes + polygon instance masks
    <out>/coco/{train,val}2017/*.jpg
    <out>/ade20k/images/{training,validation}/*.jpg
    <out>/ade20k/annotations/{training,validation}/*.png      ADE20K label convention (see SEG_CLASSES)

Example::

    python tools/generate_demo_data.py --out data/demo --seed 0
"""
import argparse
import json
import os
import os.path as osp
import sys

import cv2
import numpy as np

SHAPES = ('circle', 'rectangle', 'triangle', 'star')
# ADE20K convention: a PNG value v > 0 is ADE20K class v - 1 (0 = "other", ignored under reduce_zero_label).
# The background takes ADE20K's 'wall' (value 1); each shape takes a real ADE20K class name.
SEG_CLASSES = (('wall', 1), ('ball', 120), ('box', 42), ('tent', 115), ('flower', 67))
SHAPE_TO_SEG = dict(circle='ball', rectangle='box', triangle='tent', star='flower')


def _texture(rng, size):
    """A (size, size, 3) uint8 background: colour gradient + stripes or checks + noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(40, 215, 3), rng.uniform(40, 215, 3)
    t = np.clip(yy * rng.uniform(-1, 1) + xx * rng.uniform(-1, 1) + 0.5, 0, 1)[..., None]
    img = c0 * (1 - t) + c1 * t
    period = rng.uniform(6, 24)
    angle = rng.uniform(0, np.pi)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) * size / period
    if rng.random() < 0.5:
        pattern = np.sin(2 * np.pi * phase)
    else:
        pattern = np.sign(np.sin(np.pi * xx * size / period)) * np.sign(np.sin(np.pi * yy * size / period))
    img += pattern[..., None] * rng.uniform(5, 30)
    img += rng.normal(0, rng.uniform(3, 12), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _polygon(rng, shape, cx, cy, r):
    """Vertices (N, 2) int32 of a shape of circumradius r centred at (cx, cy), randomly rotated."""
    rot = rng.uniform(0, 2 * np.pi)
    if shape == 'circle':
        ang = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        radii = np.full(32, r)
    elif shape == 'rectangle':
        a = rng.uniform(0.35, 0.65) * np.pi / 2  # aspect ratio from the diagonal angle
        ang = np.array([a, np.pi - a, np.pi + a, 2 * np.pi - a]) + rot
        radii = np.full(4, r)
    elif shape == 'triangle':
        ang = np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) + rot
        radii = np.full(3, r)
    else:  # five-pointed star
        ang = np.linspace(0, 2 * np.pi, 10, endpoint=False) + rot
        radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
    pts = np.stack([cx + radii * np.cos(ang), cy + radii * np.sin(ang)], axis=1)
    return np.round(pts).astype(np.int32)


def render_scene(rng, size, min_objects, max_objects, min_size, max_size):
    """Render one scene.

    Returns:
        image (size, size, 3) uint8 BGR, and a list of objects ``dict(shape, mask)`` where ``mask`` is the object's
        visible (size, size) bool mask after occlusion by the objects drawn on top of it (at least half of
        every object stays visible).
    """
    img = _texture(rng, size)
    objects = []
    for _ in range(rng.integers(min_objects, max_objects + 1)):
        shape = SHAPES[rng.integers(len(SHAPES))]
        for _try in range(10):  # re-place a shape that would hide more than half of one drawn before it
            r = rng.uniform(min_size, max_size) / 2
            cx, cy = rng.uniform(r * 0.6, size - r * 0.6, 2)
            mask = np.zeros((size, size), np.uint8)
            cv2.fillPoly(mask, [_polygon(rng, shape, cx, cy, r)], 1)
            mask = mask.astype(bool)
            if all((o['mask'] & ~mask).sum() >= 0.5 * o['area'] for o in objects):
                break
        else:
            continue
        # colour far from the local background mean, plus a little texture
        bg = img[mask].mean(0)
        colour = rng.uniform(0, 255, 3)
        while np.abs(colour - bg).sum() < 150:
            colour = rng.uniform(0, 255, 3)
        fill = colour + rng.normal(0, 6, (int(mask.sum()), 3))
        img[mask] = np.clip(fill, 0, 255).astype(np.uint8)
        for obj in objects:
            obj['mask'] &= ~mask
        objects.append(dict(shape=shape, mask=mask, area=int(mask.sum())))
    return img, objects


def _mask_to_coco(mask):
    """Polygon list, [x, y, w, h] box and area of a bool mask (COCO conventions)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]
    ys, xs = np.nonzero(mask)
    x0, y0 = float(xs.min()), float(ys.min())
    bbox = [x0, y0, float(xs.max()) + 1 - x0, float(ys.max()) + 1 - y0]
    return polys, bbox, float(mask.sum())


def write_coco_split(root, split, num_images, rng, args):
    img_dir = osp.join(root, f'{split}2017')
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    categories = [dict(id=i + 1, name=s, supercategory='shape') for i, s in enumerate(SHAPES)]
    images, annotations = [], []
    for idx in range(num_images):
        img, objects = render_scene(rng, args.size, args.min_objects, args.max_objects, args.min_size,
                                    args.max_size)
        name = f'{idx:06d}.jpg'
        cv2.imwrite(osp.join(img_dir, name), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        images.append(dict(id=idx + 1, file_name=name, height=args.size, width=args.size))
        for obj in objects:
            polys, bbox, area = _mask_to_coco(obj['mask'])
            if not polys:
                continue
            annotations.append(dict(id=len(annotations) + 1, image_id=idx + 1,
                                    category_id=SHAPES.index(obj['shape']) + 1, segmentation=polys,
                                    bbox=bbox, area=area, iscrowd=0))
    ann = dict(info=dict(description='mmdynconv synthetic shapes', version='1.0'), licenses=[],
               images=images, annotations=annotations, categories=categories)
    with open(osp.join(root, 'annotations', f'instances_{split}2017.json'), 'w') as f:
        json.dump(ann, f)
    return len(annotations)


def write_ade_split(root, split, num_images, rng, args):
    img_dir = osp.join(root, 'images', split)
    ann_dir = osp.join(root, 'annotations', split)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    value = dict(SEG_CLASSES)
    for idx in range(num_images):
        img, objects = render_scene(rng, args.size, args.min_objects, args.max_objects, args.min_size,
                                    args.max_size)
        label = np.full(img.shape[:2], value['wall'], np.uint8)
        for obj in objects:  # visible masks are disjoint
            label[obj['mask']] = value[SHAPE_TO_SEG[obj['shape']]]
        name = f'ADE_{split}_{idx:08d}'
        cv2.imwrite(osp.join(img_dir, name + '.jpg'), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(osp.join(ann_dir, name + '.png'), label)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='data/demo', help='output folder (default: data/demo)')
    p.add_argument('--seed', type=int, default=0, help='random seed (>= 0); the output depends on nothing else')
    p.add_argument('--task', choices=('all', 'det', 'seg'), default='all',
                   help='det: COCO detection/instances, seg: ADE20K semantic segmentation')
    p.add_argument('--num-train', type=int, default=600, help='training images per dataset (>= 1)')
    p.add_argument('--num-val', type=int, default=100, help='validation images per dataset (>= 1)')
    p.add_argument('--size', type=int, default=128, help='image side in pixels (64..2048)')
    p.add_argument('--min-objects', type=int, default=2, help='objects per image, lower bound (>= 1)')
    p.add_argument('--max-objects', type=int, default=5, help='objects per image, upper bound (>= --min-objects)')
    p.add_argument('--min-size', type=int, default=20, help='smallest object diameter in pixels (>= 8)')
    p.add_argument('--max-size', type=int, default=56,
                   help='largest object diameter in pixels (>= --min-size, <= --size)')
    args = p.parse_args(argv)
    checks = [
        (args.seed >= 0, f'--seed must be >= 0, got {args.seed}'),
        (args.num_train >= 1, f'--num-train must be >= 1, got {args.num_train}'),
        (args.num_val >= 1, f'--num-val must be >= 1, got {args.num_val}'),
        (64 <= args.size <= 2048, f'--size must be in [64, 2048], got {args.size}'),
        (args.min_objects >= 1, f'--min-objects must be >= 1, got {args.min_objects}'),
        (args.max_objects >= args.min_objects,
         f'--max-objects must be >= --min-objects ({args.min_objects}), got {args.max_objects}'),
        (args.min_size >= 8, f'--min-size must be >= 8, got {args.min_size}'),
        (args.min_size <= args.max_size <= args.size,
         f'--max-size must be in [--min-size, --size] = [{args.min_size}, {args.size}], got {args.max_size}'),
        (not osp.isfile(args.out), f'--out must be a folder, but {args.out!r} is a file'),
    ]
    for ok, msg in checks:
        if not ok:
            p.error(msg)
    return args


def main(argv=None):
    args = parse_args(argv)
    # one independent stream per (dataset, split), so --task det and --task all give the same COCO files
    streams = {key: np.random.default_rng([args.seed, i]) for i, key in enumerate(
        ('coco_train', 'coco_val', 'ade_train', 'ade_val'))}
    if args.task in ('all', 'det'):
        root = osp.join(args.out, 'coco')
        n_train = write_coco_split(root, 'train', args.num_train, streams['coco_train'], args)
        n_val = write_coco_split(root, 'val', args.num_val, streams['coco_val'], args)
        print(f'COCO-format shapes: {root} ({args.num_train} + {args.num_val} images, '
              f'{n_train} + {n_val} objects)')
    if args.task in ('all', 'seg'):
        root = osp.join(args.out, 'ade20k')
        write_ade_split(root, 'training', args.num_train, streams['ade_train'], args)
        write_ade_split(root, 'validation', args.num_val, streams['ade_val'], args)
        print(f'ADE20K-format shapes: {root} ({args.num_train} + {args.num_val} images)')


if __name__ == '__main__':
    sys.exit(main())
