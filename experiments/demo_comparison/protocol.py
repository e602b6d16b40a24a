"""The comparison's protocol: the two generated tasks, the schedules and the seeds (one source for the docs).

* Pretraining task: detection of ``PRETRAIN_SHAPES`` (hexagon, cross, ellipse, arrow) in saturated colours, other
  object scales, data seed 1. A plain backbone and a DDF-ResNet backbone are pretrained on it with the same budget.
* Evaluation task: the demo shapes (circle, rectangle, triangle, star) in uniform colours, data seed 0, COCO
  detection (bbox mAP) and ADE20K-format segmentation (mIoU).
* Fine-tuning: every variant with the same schedule and seeds; from the pretrained backbone (stage 1 frozen,
  BatchNorm statistics frozen: mmdet's fine-tuning default; FDConv keeps its modulation parameters trainable in the
  frozen stage) and from scratch (nothing frozen), side by side.
"""
from dataclasses import dataclass, field, replace

from mmdynconv.utils.demo_data import PRETRAIN_SHAPES, DemoDataSpec


@dataclass(frozen=True)
class Schedule:
    """Iteration-based AdamW schedule: linear warm-up over ``warmup`` iterations, then ×0.1 at 75 % and 92 %."""
    iters: int
    warmup: int = 50
    batch_size: int = 8

    def __post_init__(self):
        if self.iters < 1 or self.warmup < 0 or self.batch_size < 1:
            raise ValueError(f'Schedule: iters >= 1, warmup >= 0 and batch_size >= 1 needed, got {self}')

    def config(self):
        """The ``train_cfg`` and ``param_scheduler`` config entries."""
        n = self.iters
        warmup = min(self.warmup, n)
        return dict(
            train_cfg=dict(_delete_=True, type='IterBasedTrainLoop', max_iters=n, val_interval=n),
            param_scheduler=[
                dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=max(warmup, 1)),
                dict(type='MultiStepLR', by_epoch=False, begin=0, end=n, milestones=[int(0.75 * n), int(0.92 * n)],
                     gamma=0.1)])


@dataclass(frozen=True)
class Protocol:
    """Everything a comparison run depends on besides the configs under ``configs/compare``."""
    name: str
    eval_data: DemoDataSpec
    pretrain_data: DemoDataSpec
    pretrain: Schedule
    det: Schedule
    seg: Schedule
    det_seeds: tuple = (0, 1, 2)
    seg_seeds: tuple = (0,)
    tasks: tuple = ('det', 'seg')
    frozen_stages: int = field(default=1)

    def with_seeds(self, det_seeds=None, seg_seeds=None, tasks=None):
        return replace(self, det_seeds=tuple(det_seeds) if det_seeds is not None else self.det_seeds,
                       seg_seeds=tuple(seg_seeds) if seg_seeds is not None else self.seg_seeds,
                       tasks=tuple(tasks) if tasks is not None else self.tasks)


_EVAL = dict(seed=0, size=64, min_objects=1, max_objects=4, min_size=12, max_size=32)
_PRETRAIN = dict(seed=1, task='det', size=64, min_objects=1, max_objects=4, min_size=10, max_size=44,
                 shapes=PRETRAIN_SHAPES, palette='saturated')

FULL = Protocol(
    name='full',
    eval_data=DemoDataSpec(num_train=400, num_val=100, **_EVAL),
    pretrain_data=DemoDataSpec(num_train=800, num_val=50, **_PRETRAIN),
    pretrain=Schedule(iters=400, warmup=25),
    det=Schedule(iters=150, warmup=25),
    seg=Schedule(iters=150, warmup=25),
    det_seeds=(0, 1, 2),
    seg_seeds=(0, 1, 2))

QUICK = Protocol(
    name='quick',
    eval_data=DemoDataSpec(num_train=8, num_val=4, **_EVAL),
    pretrain_data=DemoDataSpec(num_train=8, num_val=4, **_PRETRAIN),
    pretrain=Schedule(iters=3, warmup=1, batch_size=2),
    det=Schedule(iters=2, warmup=1, batch_size=2),
    seg=Schedule(iters=2, warmup=1, batch_size=2),
    det_seeds=(0,),
    seg_seeds=(0,))

PROTOCOLS = dict(full=FULL, quick=QUICK)
