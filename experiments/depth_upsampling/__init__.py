"""Guided depth upsampling with DDF-Up (DDF paper's joint-upsampling application): synthetic RGB-D data, an
mmengine dataset, model and metric (registered in mmengine's root registries: ``custom_imports =
dict(imports=['experiments.depth_upsampling'])``, importable from a clone: ``tools/train.py`` puts the repository
root on ``sys.path``), and classical baselines. See docs/depth_upsampling.md."""
from .baselines import bicubic_upsample, box_filter, guided_filter
from .dataset import RGBDUpsamplingDataset, area_downsample
from .metric import DepthRMSE, depth_edge_mask
from .model import GuidedDepthUpsampler
from .scenes import read_rgbd, render_rgbd, write_rgbd_dataset

__all__ = ['bicubic_upsample', 'box_filter', 'guided_filter', 'RGBDUpsamplingDataset', 'area_downsample',
           'DepthRMSE', 'depth_edge_mask', 'GuidedDepthUpsampler', 'read_rgbd', 'render_rgbd', 'write_rgbd_dataset']
