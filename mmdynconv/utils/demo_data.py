"""Synthetic demo datasets in the real COCO and ADE20K on-disk formats (the logic of ``tools/generate_demo_data.py``).

Scenes are coloured shapes of varied sizes, colours and overlaps on textured backgrounds, deterministic given the
seed::

    <out>/coco/annotations/instances_{train,val}2017.json     boxes + polygon instance masks
    <out>/coco/{train,val}2017/*.jpg
    <out>/ade20k/images/{training,validation}/*.jpg
    <out>/ade20k/annotations/{training,validation}/*.png      ADE20K label convention (see SEG_CLASSES)

The evaluation task uses ``EVAL_SHAPES`` with uniformly drawn colours; a *different* task (for pretraining) takes
other shapes (``PRETRAIN_SHAPES``), the ``'saturated'`` palette, other object scales and another seed.
"""
import colorsys
import json
import os
import os.path as osp
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ['EVAL_SHAPES', 'PRETRAIN_SHAPES', 'ALL_SHAPES', 'PALETTES', 'TASKS', 'SEG_CLASSES', 'DemoDataSpec',
           'render_scene', 'write_coco_split', 'write_ade_split', 'generate']

EVAL_SHAPES = ('circle', 'rectangle', 'triangle', 'star')
PRETRAIN_SHAPES = ('hexagon', 'cross', 'ellipse', 'arrow')
ALL_SHAPES = EVAL_SHAPES + PRETRAIN_SHAPES
PALETTES = ('uniform', 'saturated')
TASKS = ('all', 'det', 'seg')
# ADE20K convention: a PNG value v > 0 is ADE20K class v - 1 (0 = "other", ignored under reduce_zero_label).
# The background takes ADE20K's 'wall' (value 1); each shape takes a real ADE20K class name.
SEG_CLASSES = (('wall', 1), ('ball', 120), ('box', 42), ('tent', 115), ('flower', 67))
SHAPE_TO_SEG = dict(circle='ball', rectangle='box', triangle='tent', star='flower')


@dataclass
class DemoDataSpec:
    """What to generate. ``shapes``: the object classes (COCO category ids follow this order); ``palette``:
    ``'uniform'`` (any RGB colour far enough from the background) or ``'saturated'`` (fully saturated hues)."""
    seed: int = 0
    task: str = 'all'
    num_train: int = 600
    num_val: int = 100
    size: int = 128
    min_objects: int = 2
    max_objects: int = 5
    min_size: int = 20
    max_size: int = 56
    shapes: tuple = EVAL_SHAPES
    palette: str = 'uniform'

    def errors(self, name=str):
        """The list of messages naming each bad field (empty when the spec is valid); ``name`` spells a field
        (the CLI passes one giving ``--num-train`` for ``num_train``)."""
        n = {f: name(f) for f in ('seed', 'task', 'num_train', 'num_val', 'size', 'min_objects', 'max_objects',
                                  'min_size', 'max_size', 'shapes', 'palette')}
        shapes = tuple(self.shapes)
        checks = [
            (self.seed >= 0, f'{n["seed"]} must be >= 0, got {self.seed}'),
            (self.task in TASKS, f'{n["task"]} must be one of {TASKS}, got {self.task!r}'),
            (self.num_train >= 1, f'{n["num_train"]} must be >= 1, got {self.num_train}'),
            (self.num_val >= 1, f'{n["num_val"]} must be >= 1, got {self.num_val}'),
            (64 <= self.size <= 2048, f'{n["size"]} must be in [64, 2048], got {self.size}'),
            (self.min_objects >= 1, f'{n["min_objects"]} must be >= 1, got {self.min_objects}'),
            (self.max_objects >= self.min_objects,
             f'{n["max_objects"]} must be >= {n["min_objects"]} ({self.min_objects}), got {self.max_objects}'),
            (self.min_size >= 8, f'{n["min_size"]} must be >= 8, got {self.min_size}'),
            (self.min_size <= self.max_size <= self.size,
             f'{n["max_size"]} must be in [{n["min_size"]}, {n["size"]}] = [{self.min_size}, {self.size}], '
             f'got {self.max_size}'),
            (len(shapes) >= 1 and len(set(shapes)) == len(shapes) and set(shapes) <= set(ALL_SHAPES),
             f'{n["shapes"]} must be distinct names from {ALL_SHAPES}, got {shapes!r}'),
            (self.palette in PALETTES, f'{n["palette"]} must be one of {PALETTES}, got {self.palette!r}'),
            (self.task == 'det' or set(shapes) <= set(SHAPE_TO_SEG),
             f'{n["shapes"]} {shapes!r}: the ADE20K format maps only {tuple(SHAPE_TO_SEG)} to classes; '
             f'use {n["task"]} det'),
        ]
        return [msg for ok, msg in checks if not ok]


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


def _outline(rng, shape):
    """(angles, radii / r) of a shape's vertices around its centre, before rotation."""
    if shape == 'circle':
        return np.linspace(0, 2 * np.pi, 32, endpoint=False), np.ones(32)
    if shape == 'rectangle':
        a = rng.uniform(0.35, 0.65) * np.pi / 2  # aspect ratio from the diagonal angle
        return np.array([a, np.pi - a, np.pi + a, 2 * np.pi - a]), np.ones(4)
    if shape == 'triangle':
        return np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]), np.ones(3)
    if shape == 'star':  # five-pointed
        return np.linspace(0, 2 * np.pi, 10, endpoint=False), np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
    if shape == 'hexagon':
        return np.linspace(0, 2 * np.pi, 6, endpoint=False), np.ones(6)
    if shape == 'ellipse':  # axis ratio 0.35..0.65
        ang = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        b = rng.uniform(0.35, 0.65)
        return ang, b / np.sqrt((b * np.cos(ang)) ** 2 + np.sin(ang) ** 2)
    if shape == 'cross':  # plus sign, arm half-width 0.3 r
        xy = np.array([(1, .3), (.3, .3), (.3, 1), (-.3, 1), (-.3, .3), (-1, .3), (-1, -.3), (-.3, -.3), (-.3, -1),
                       (.3, -1), (.3, -.3), (1, -.3)])
    else:  # arrow pointing along +x
        xy = np.array([(1, 0), (.2, .7), (.2, .3), (-1, .3), (-1, -.3), (.2, -.3), (.2, -.7)])
    return np.arctan2(xy[:, 1], xy[:, 0]), np.hypot(xy[:, 0], xy[:, 1]) / np.hypot(xy[:, 0], xy[:, 1]).max()


def _polygon(rng, shape, cx, cy, r):
    """Vertices (N, 2) int32 of a shape of circumradius r centred at (cx, cy), randomly rotated."""
    rot = rng.uniform(0, 2 * np.pi)
    ang, radii = _outline(rng, shape)
    if shape != 'circle':
        ang = ang + rot
    pts = np.stack([cx + r * radii * np.cos(ang), cy + r * radii * np.sin(ang)], axis=1)
    return np.round(pts).astype(np.int32)


def _colour(rng, palette, bg):
    """A fill colour (3,) far (L1 >= 150) from the local background mean ``bg``."""
    while True:
        if palette == 'uniform':
            colour = rng.uniform(0, 255, 3)
        else:
            colour = np.array(colorsys.hsv_to_rgb(rng.uniform(), 1.0, rng.uniform(0.7, 1.0))) * 255
        if np.abs(colour - bg).sum() >= 150:
            return colour


def render_scene(rng, spec):
    """Render one scene of ``spec`` (a :class:`DemoDataSpec`).

    Returns:
        image (size, size, 3) uint8 BGR, and a list of objects ``dict(shape, mask, area)`` where ``mask`` is the
        object's visible (size, size) bool mask after occlusion by the objects drawn on top of it (at least half of
        every object stays visible).
    """
    size = spec.size
    img = _texture(rng, size)
    objects = []
    for _ in range(rng.integers(spec.min_objects, spec.max_objects + 1)):
        shape = spec.shapes[rng.integers(len(spec.shapes))]
        for _try in range(10):  # re-place a shape that would hide more than half of one drawn before it
            r = rng.uniform(spec.min_size, spec.max_size) / 2
            cx, cy = rng.uniform(r * 0.6, size - r * 0.6, 2)
            mask = np.zeros((size, size), np.uint8)
            cv2.fillPoly(mask, [_polygon(rng, shape, cx, cy, r)], 1)
            mask = mask.astype(bool)
            if mask.any() and all((o['mask'] & ~mask).sum() >= 0.5 * o['area'] for o in objects):
                break
        else:
            continue
        colour = _colour(rng, spec.palette, img[mask].mean(0))
        fill = colour + rng.normal(0, 6, (int(mask.sum()), 3))  # a little texture
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


def write_coco_split(root, split, num_images, rng, spec):
    """Write ``<root>/{split}2017/*.jpg`` and its instances json; return the number of objects."""
    img_dir = osp.join(root, f'{split}2017')
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    categories = [dict(id=i + 1, name=s, supercategory='shape') for i, s in enumerate(spec.shapes)]
    images, annotations = [], []
    for idx in range(num_images):
        img, objects = render_scene(rng, spec)
        name = f'{idx:06d}.jpg'
        cv2.imwrite(osp.join(img_dir, name), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        images.append(dict(id=idx + 1, file_name=name, height=spec.size, width=spec.size))
        for obj in objects:
            if not obj['mask'].any():
                continue
            polys, bbox, area = _mask_to_coco(obj['mask'])
            if not polys:
                continue
            annotations.append(dict(id=len(annotations) + 1, image_id=idx + 1,
                                    category_id=spec.shapes.index(obj['shape']) + 1, segmentation=polys,
                                    bbox=bbox, area=area, iscrowd=0))
    ann = dict(info=dict(description='mmdynconv synthetic shapes', version='1.0'), licenses=[],
               images=images, annotations=annotations, categories=categories)
    with open(osp.join(root, 'annotations', f'instances_{split}2017.json'), 'w') as f:
        json.dump(ann, f)
    return len(annotations)


def write_ade_split(root, split, num_images, rng, spec):
    """Write ``<root>/images/<split>/*.jpg`` and the label PNGs under ``<root>/annotations/<split>``."""
    img_dir = osp.join(root, 'images', split)
    ann_dir = osp.join(root, 'annotations', split)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    value = dict(SEG_CLASSES)
    for idx in range(num_images):
        img, objects = render_scene(rng, spec)
        label = np.full(img.shape[:2], value['wall'], np.uint8)
        for obj in objects:  # visible masks are disjoint
            label[obj['mask']] = value[SHAPE_TO_SEG[obj['shape']]]
        name = f'ADE_{split}_{idx:08d}'
        cv2.imwrite(osp.join(img_dir, name + '.jpg'), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(osp.join(ann_dir, name + '.png'), label)


def generate(out, spec, log=print):
    """Write the datasets of ``spec`` under ``out`` (see the module docstring); ValueError names a bad field."""
    errors = spec.errors()
    if errors:
        raise ValueError('; '.join(errors))
    if osp.isfile(out):
        raise ValueError(f'out must be a folder, but {out!r} is a file')
    spec.shapes = tuple(spec.shapes)
    # one independent stream per (dataset, split), so task 'det' and task 'all' give the same COCO files
    streams = {key: np.random.default_rng([spec.seed, i]) for i, key in enumerate(
        ('coco_train', 'coco_val', 'ade_train', 'ade_val'))}
    if spec.task in ('all', 'det'):
        root = osp.join(out, 'coco')
        n_train = write_coco_split(root, 'train', spec.num_train, streams['coco_train'], spec)
        n_val = write_coco_split(root, 'val', spec.num_val, streams['coco_val'], spec)
        log(f'COCO-format shapes: {root} ({spec.num_train} + {spec.num_val} images, {n_train} + {n_val} objects)')
    if spec.task in ('all', 'seg'):
        root = osp.join(out, 'ade20k')
        write_ade_split(root, 'training', spec.num_train, streams['ade_train'], spec)
        write_ade_split(root, 'validation', spec.num_val, streams['ade_val'], spec)
        log(f'ADE20K-format shapes: {root} ({spec.num_train} + {spec.num_val} images)')
