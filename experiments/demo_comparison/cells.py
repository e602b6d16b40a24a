"""The comparison's variants and the jobs (pretraining runs and fine-tuning cells) a protocol expands into."""
import os.path as osp
from dataclasses import dataclass

from mmdynconv.comparison.cli import DEMO_INITS as INITS  # one list for the CLI and the runs
from mmdynconv.comparison.config_runner import run_key

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(ROOT, 'configs', 'compare')


@dataclass(frozen=True)
class Variant:
    """One model under comparison: ``config`` (a file under ``configs/compare``), ``pretrain`` (the pretraining run
    whose backbone it fine-tunes from), ``optional`` (skipped while its config does not exist yet; runs after the
    core variants), ``inits`` (the initialisations it runs with), ``priority`` (lower runs first)."""
    name: str
    task: str
    config: str
    pretrain: str = 'plain'
    optional: bool = False
    inits: tuple = INITS
    priority: int = 0

    @property
    def config_path(self):
        return osp.join(CONFIG_DIR, self.config)


PRETRAIN_CONFIGS = dict(plain='faster-rcnn_tiny-r50_fpn_pretrain-shapes64.py',
                        ddf='faster-rcnn_tiny-ddf-r50_fpn_pretrain-shapes64.py')

_VARIANTS = [
    # detector: Faster R-CNN tiny R50-FPN, bbox mAP
    Variant('plain', 'det', 'faster-rcnn_tiny-r50_fpn_shapes64.py'),
    Variant('DDF-Up neck', 'det', 'faster-rcnn_tiny-r50_ddf-up-fpn_shapes64.py'),
    Variant('DDF-ResNet', 'det', 'faster-rcnn_tiny-ddf-r50_fpn_shapes64.py', pretrain='ddf'),
    Variant('FDConv-ResNet', 'det', 'faster-rcnn_tiny-r50-fdconv_fpn_shapes64.py'),
    Variant('CondConv-ResNet', 'det', 'faster-rcnn_tiny-r50-condconv_fpn_shapes64.py', optional=True, priority=3),
    Variant('DY-Conv-ResNet', 'det', 'faster-rcnn_tiny-r50-dyconv_fpn_shapes64.py', optional=True, priority=3),
    Variant('ODConv-ResNet', 'det', 'faster-rcnn_tiny-r50-odconv_fpn_shapes64.py', optional=True, priority=3),
    Variant('CARAFE neck', 'det', 'faster-rcnn_tiny-r50_carafe-fpn_shapes64.py', optional=True, priority=3),
    Variant('DySample neck', 'det', 'faster-rcnn_tiny-r50_dysample-fpn_shapes64.py', optional=True, priority=3),
    Variant('DCD-ResNet', 'det', 'faster-rcnn_tiny-r50-dcd_fpn_shapes64.py', optional=True, priority=4),
    Variant('KernelWarehouse-ResNet', 'det', 'faster-rcnn_tiny-r50-kw_fpn_shapes64.py', optional=True, priority=4),
    Variant('FADE neck', 'det', 'faster-rcnn_tiny-r50_fade-fpn_shapes64.py', optional=True, priority=4),
    Variant('SAPA neck', 'det', 'faster-rcnn_tiny-r50_sapa-fpn_shapes64.py', optional=True, priority=4),
    # diagnostics (docs/comparison.md, FDConv investigation): FDConv with its kernel's AdamW step matched to a plain
    # conv's (from scratch); FDConv with its KSM BatchNorms kept in training mode (fine-tuned)
    Variant('FDConv-ResNet kernel-lr-x3.05', 'det', 'faster-rcnn_tiny-r50-fdconv-kernel-lr_fpn_shapes64.py',
            optional=True, inits=('scratch',), priority=1),
    Variant('FDConv-ResNet KSM-BN-train', 'det', 'faster-rcnn_tiny-r50-fdconv-ksm-bn_fpn_shapes64.py',
            optional=True, inits=('pretrained',), priority=1),
    # segmenter: semantic FPN tiny R50, mIoU
    Variant('plain', 'seg', 'semfpn_tiny-r50_shapes64.py', priority=2),
    Variant('DDF-Up neck', 'seg', 'semfpn_tiny-r50_ddf-up-fpn_shapes64.py', priority=2),
    Variant('DDF-ResNet', 'seg', 'semfpn_tiny-ddf-r50_shapes64.py', pretrain='ddf', priority=2),
    Variant('FDConv-ResNet', 'seg', 'semfpn_tiny-r50-fdconv_shapes64.py', priority=2),
    Variant('CARAFE neck', 'seg', 'semfpn_tiny-r50_carafe-fpn_shapes64.py', optional=True, priority=3),
    Variant('DySample neck', 'seg', 'semfpn_tiny-r50_dysample-fpn_shapes64.py', optional=True, priority=3),
    Variant('FADE neck', 'seg', 'semfpn_tiny-r50_fade-fpn_shapes64.py', optional=True, priority=4),
    Variant('SAPA neck', 'seg', 'semfpn_tiny-r50_sapa-fpn_shapes64.py', optional=True, priority=4),
]


def variants(tasks=('det', 'seg'), names=None):
    """The variants of ``tasks`` whose configs exist (optional ones are skipped until their config is added);
    ``names`` keeps only those names (``'plain'`` is always kept: it is every table's reference)."""
    chosen = [v for v in _VARIANTS if v.task in tasks and (not v.optional or osp.isfile(v.config_path))]
    if names is not None:
        unknown = set(names) - {v.name for v in _VARIANTS}
        if unknown:
            raise ValueError(f'variants: unknown names {sorted(unknown)}; known: '
                             f'{sorted({v.name for v in _VARIANTS})}')
        chosen = [v for v in chosen if v.name in names or v.name == 'plain']
    return chosen


@dataclass(frozen=True)
class Job:
    """One training run. ``kind``: ``'pretrain'`` or ``'finetune'``; ``init``: ``'pretrained'`` / ``'scratch'``
    (fine-tuning) or None; ``folder``: the config runner's variant name (``<task>/<variant>/<init>`` or
    ``pretrain/<kind>``); ``key``: its folder under the output root (``<folder>/seed<k>``)."""
    kind: str
    task: str
    variant: str
    config: str
    seed: int
    init: str = None
    pretrain: str = None

    @property
    def folder(self):
        if self.kind == 'pretrain':
            return f'pretrain/{self.pretrain}'
        return f'{self.task}/{self.variant.replace(" ", "_")}/{self.init}'

    @property
    def key(self):
        return run_key(self.folder, self.seed)


def pretrain_jobs(chosen):
    """One pretraining run per backbone kind the chosen variants fine-tune from."""
    kinds = sorted({v.pretrain for v in chosen}, key=list(PRETRAIN_CONFIGS).index)
    return [Job('pretrain', 'det', f'pretrain {k}', osp.join(CONFIG_DIR, PRETRAIN_CONFIGS[k]), 0, pretrain=k)
            for k in kinds]


def finetune_jobs(chosen, protocol, inits=INITS):
    """Every (variant, init, seed) cell, in the order they run: by variant priority (core detector variants, the
    diagnostic, core segmenter variants, baselines), then seed by seed (so that an interrupted comparison has whole
    seeds of every variant of a priority)."""
    jobs = []
    for v in chosen:
        if v.task not in protocol.tasks:
            continue
        for seed in protocol.det_seeds if v.task == 'det' else protocol.seg_seeds:
            for init in (i for i in inits if i in v.inits):
                jobs.append(Job('finetune', v.task, v.name, v.config_path, seed, init,
                                v.pretrain if init == 'pretrained' else None))
    order = {(v.task, v.name): i for i, v in enumerate(chosen)}
    priority = {(v.task, v.name): v.priority for v in chosen}
    return sorted(jobs, key=lambda j: (priority[j.task, j.variant], protocol.tasks.index(j.task), j.seed,
                                       inits.index(j.init), order[j.task, j.variant]))
