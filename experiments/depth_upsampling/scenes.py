"""Synthetic RGB-D scenes for guided depth upsampling, and their on-disk format.

A scene is a slanted background plane with 3–6 planar shapes (discs, boxes, triangles) in front of it, drawn far to
near. Every surface is a plane in depth (metres), so depth edges are exactly the visible shape outlines. The colour
image is built so that guidance must be used selectively:

- *coinciding edges*: most shapes get a colour unlike what lies behind them, so their outline is an RGB edge;
- *texture-only edges*: the background carries stripes or checks and flat painted "decals" (polygons of another
  colour with no depth change), and half of the shapes carry their own stripes;
- *depth-only edges*: one shape in four is camouflaged (its colour is the mean colour behind it), so its outline
  is a depth edge with (almost) no RGB edge.

On-disk format (``write_rgbd_dataset``), ``<root>/``::

    train.json, val.json     {"format": "mmdynconv-rgbd-v1", "depth_unit_m": 0.001, "height": H, "width": W,
                               "items": [{"rgb": "train/rgb/000000.png", "depth": "train/depth/000000.png"}, ...]}
    <split>/rgb/NNNNNN.png   8-bit 3-channel PNG (written and read as BGR by OpenCV)
    <split>/depth/NNNNNN.png 16-bit 1-channel PNG, depth in millimetres (value × depth_unit_m = metres; 0 = invalid)

Paths in ``items`` are relative to ``<root>``. The low-resolution input is not stored: the dataset makes it from the
ground truth (``RGBDUpsamplingDataset``).
"""
import json
import os
import os.path as osp

import cv2
import numpy as np

FORMAT = 'mmdynconv-rgbd-v1'
DEPTH_UNIT_M = 0.001
SHAPES = ('disc', 'box', 'triangle')


def _plane(rng, size, d0, slope):
    """(size, size) float depth plane d0 + a·u + b·v, u, v ∈ [-0.5, 0.5], |a|, |b| <= slope."""
    v, u = np.mgrid[0:size, 0:size].astype(np.float64) / size - 0.5
    a, b = rng.uniform(-slope, slope, 2)
    return d0 + a * u + b * v


def _stripes(rng, size, contrast):
    """(size, size) float pattern in [-contrast, contrast]: hard stripes or checks of random period and angle."""
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    period = rng.uniform(5, 16)
    angle = rng.uniform(0, np.pi)
    s = np.sign(np.sin(np.pi * (u * np.cos(angle) + v * np.sin(angle)) / period))
    if rng.random() < 0.4:  # checks
        s = s * np.sign(np.sin(np.pi * (-u * np.sin(angle) + v * np.cos(angle)) / period))
    return s * contrast


def _shape_mask(rng, shape, size, min_diam, max_diam):
    r = rng.uniform(min_diam, max_diam) / 2
    cx, cy = rng.uniform(0.1 * size, 0.9 * size, 2)
    mask = np.zeros((size, size), np.uint8)
    if shape == 'disc':
        cv2.ellipse(mask, (int(cx), int(cy)), (int(r), int(r * rng.uniform(0.6, 1.0))), rng.uniform(0, 180),
                    0, 360, 1, -1)
    else:
        n = 4 if shape == 'box' else 3
        ang = np.arange(n) * 2 * np.pi / n + rng.uniform(0, 2 * np.pi)
        if shape == 'box':  # random aspect ratio
            a = rng.uniform(0.3, 0.7) * np.pi / 2
            ang = np.array([a, np.pi - a, np.pi + a, 2 * np.pi - a]) + ang[0]
        pts = np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], 1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask.astype(bool)


def _colour_unlike(rng, ref):
    colour = rng.uniform(0, 255, 3)
    while np.abs(colour - ref).sum() < 180:
        colour = rng.uniform(0, 255, 3)
    return colour


def render_rgbd(rng, size=128, min_objects=3, max_objects=6):
    """Render one scene.

    Returns:
        rgb (size, size, 3) uint8 (BGR order, as OpenCV writes it), depth (size, size) float64 metres in
        [0.5, 6], and the stats ``dict(camouflaged=int, decals=int, objects=int)``.
    """
    if size < 32:
        raise ValueError(f'render_rgbd: size must be >= 32, got {size}')
    depth = _plane(rng, size, rng.uniform(4.0, 5.0), 1.0)
    base = rng.uniform(40, 215, 3)
    rgb = np.tile(base, (size, size, 1)) + _stripes(rng, size, rng.uniform(15, 45))[..., None]
    decals = int(rng.integers(1, 4))
    for _ in range(decals):  # texture edges without depth edges
        mask = _shape_mask(rng, SHAPES[rng.integers(1, 3)], size, 0.15 * size, 0.45 * size)
        rgb[mask] = _colour_unlike(rng, base)
    objects = int(rng.integers(min_objects, max_objects + 1))
    near = np.sort(rng.uniform(1.0, 3.5, objects))[::-1]  # drawn far to near
    camouflaged = 0
    for d0 in near:
        mask = _shape_mask(rng, SHAPES[rng.integers(len(SHAPES))], size, 0.2 * size, 0.5 * size)
        if not mask.any():
            continue
        depth[mask] = _plane(rng, size, d0, 0.4)[mask]
        behind = rgb[mask].mean(0)
        if rng.random() < 0.25:  # depth edge without an RGB edge
            colour, camouflaged = behind, camouflaged + 1
            fill = np.tile(colour, (int(mask.sum()), 1))
        else:
            colour = _colour_unlike(rng, behind)
            fill = np.tile(colour, (int(mask.sum()), 1))
            if rng.random() < 0.5:  # texture edges inside the shape
                fill = fill + _stripes(rng, size, rng.uniform(30, 60))[mask][:, None]
        rgb[mask] = fill
    rgb = rgb + rng.normal(0, 3, rgb.shape)
    rgb = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
    return rgb, np.clip(depth, 0.5, 6.0), dict(camouflaged=camouflaged, decals=decals, objects=objects)


def write_rgbd_dataset(root, num_train=160, num_val=40, size=128, seed=0):
    """Write ``train`` and ``val`` splits in the format of this module's docstring; deterministic given ``seed``.

    Returns ``{split: number of images}``.
    """
    for name, value, low in (('num_train', num_train, 1), ('num_val', num_val, 1), ('size', size, 32),
                             ('seed', seed, 0)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f'write_rgbd_dataset: {name} must be an int >= {low}, got {value!r}')
    counts = {}
    for i, (split, n) in enumerate((('train', num_train), ('val', num_val))):
        rng = np.random.default_rng([seed, i])
        for sub in ('rgb', 'depth'):
            os.makedirs(osp.join(root, split, sub), exist_ok=True)
        items = []
        for idx in range(n):
            rgb, depth, _ = render_rgbd(rng, size)
            item = dict(rgb=f'{split}/rgb/{idx:06d}.png', depth=f'{split}/depth/{idx:06d}.png')
            cv2.imwrite(osp.join(root, item['rgb']), rgb)
            cv2.imwrite(osp.join(root, item['depth']), np.round(depth / DEPTH_UNIT_M).astype(np.uint16))
            items.append(item)
        index = dict(format=FORMAT, depth_unit_m=DEPTH_UNIT_M, height=size, width=size, items=items)
        with open(osp.join(root, f'{split}.json'), 'w') as f:
            json.dump(index, f, indent=1)
        counts[split] = n
    return counts


def read_rgbd(root, item, depth_unit_m):
    """Read one item of an index: rgb (H, W, 3) float32 RGB in [0, 1], depth (H, W) float32 metres."""
    bgr = cv2.imread(osp.join(root, item['rgb']), cv2.IMREAD_COLOR)
    raw = cv2.imread(osp.join(root, item['depth']), cv2.IMREAD_UNCHANGED)
    if bgr is None or raw is None:
        raise FileNotFoundError(f'read_rgbd: cannot read {item["rgb"]!r} or {item["depth"]!r} under {root!r}')
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise ValueError(f'read_rgbd: {item["depth"]!r} must be a 16-bit 1-channel PNG, got {raw.dtype} '
                         f'with shape {raw.shape}')
    if raw.shape != bgr.shape[:2]:
        raise ValueError(f'read_rgbd: {item["rgb"]!r} is {bgr.shape[:2]} but {item["depth"]!r} is {raw.shape}')
    rgb = bgr[..., ::-1].astype(np.float32) / 255
    return np.ascontiguousarray(rgb), raw.astype(np.float32) * depth_unit_m
