"""``RGBDUpsamplingDataset``: the RGB-D format of :mod:`.scenes` as an mmengine dataset."""
import json

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmengine.registry import DATASETS

from .scenes import FORMAT, read_rgbd


def _to_tensor(a):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def area_downsample(depth, factor):
    """Mean over non-overlapping factor×factor blocks: (..., H, W) → (..., H/factor, W/factor)."""
    *lead, h, w = depth.shape
    if h % factor or w % factor:
        raise ValueError(f'area_downsample: the size {(h, w)} must be divisible by the factor {factor}')
    return depth.reshape(*lead, h // factor, factor, w // factor, factor).mean(axis=(-3, -1))


@DATASETS.register_module()
class RGBDUpsamplingDataset(BaseDataset):
    """High-resolution RGB + depth pairs; the low-resolution depth input is made on the fly.

    Each sample is ``dict(inputs=dict(rgb=(3, H, W), depth_lr=(1, H/S, W/S)), data_samples=dict(depth=(1, H, W)))``,
    float32, RGB in [0, 1] and depth in metres. The low-resolution depth is the mean of every S×S block of the
    ground truth (an area-integrating sensor). Collate with ``dict(type='default_collate')``.

    Args:
        ann_file: the split's json index (relative to ``data_root``), see :mod:`.scenes`.
        scale_factor: S, an int >= 2 dividing the crop (or image) size.
        crop_size: None (whole image) or an int: random square crops (training), a multiple of S.
        flip: random horizontal flips (training).
        Other arguments: see ``mmengine.dataset.BaseDataset`` (``pipeline`` must stay empty: the sample is built
        here).
    """

    def __init__(self, ann_file, scale_factor, data_root='', crop_size=None, flip=False, **kwargs):
        if not isinstance(scale_factor, int) or scale_factor < 2:
            raise ValueError(f'RGBDUpsamplingDataset: scale_factor must be an int >= 2, got {scale_factor!r}')
        if crop_size is not None and (not isinstance(crop_size, int) or crop_size < scale_factor
                                      or crop_size % scale_factor):
            raise ValueError(f'RGBDUpsamplingDataset: crop_size must be None or a positive multiple of '
                             f'scale_factor={scale_factor}, got {crop_size!r}')
        if kwargs.get('pipeline'):
            raise ValueError('RGBDUpsamplingDataset: pipeline must be empty (samples are built by the dataset)')
        self.scale_factor, self.crop_size, self.flip = scale_factor, crop_size, flip
        super().__init__(ann_file=ann_file, data_root=data_root, **kwargs)

    def load_data_list(self):
        with open(self.ann_file) as f:
            index = json.load(f)
        if index.get('format') != FORMAT:
            raise ValueError(f'RGBDUpsamplingDataset: {self.ann_file!r} has format {index.get("format")!r}, '
                             f'expected {FORMAT!r}')
        self.depth_unit_m = float(index['depth_unit_m'])
        return [dict(item, index=i) for i, item in enumerate(index['items'])]

    def prepare_data(self, idx):
        info = self.get_data_info(idx)
        rgb, depth = read_rgbd(self.data_root, info, self.depth_unit_m)
        h, w = depth.shape
        if self.crop_size is not None:
            c = self.crop_size
            if c > min(h, w):
                raise ValueError(f'RGBDUpsamplingDataset: crop_size {c} is larger than image {info["rgb"]!r} '
                                 f'{(h, w)}')
            y, x = np.random.randint(0, h - c + 1), np.random.randint(0, w - c + 1)
            rgb, depth = rgb[y:y + c, x:x + c], depth[y:y + c, x:x + c]
        if self.flip and np.random.rand() < 0.5:
            rgb, depth = rgb[:, ::-1], depth[:, ::-1]
        low = area_downsample(depth, self.scale_factor)
        return dict(inputs=dict(rgb=_to_tensor(rgb.transpose(2, 0, 1)), depth_lr=_to_tensor(low[None])),
                    data_samples=dict(depth=_to_tensor(depth[None]), index=info['index']))
