"""One training step of whole models with each layer variant, against the plain model, same run.

Models: mmdet's Faster R-CNN R50-FPN (``det``: 800×1216 input, batch 2) and mmseg's UPerNet R50 (``seg``: 512×512,
batch 4, its SyncBN replaced by BN: one process). Methods: ``plain`` (the config as mmdet / mmseg ship it) and every
declared layer variant that applies to it (:mod:`mmdynconv.models.variants`: backbone variants to both, upsampler
variants to Faster R-CNN's FPN and to UPerNet's ``UPerHead`` top-down path). One step is ``model.loss`` on a
synthetic batch (random image, 3 random boxes per image / a random 150-class label map, seeded) and the backward of
the summed losses into every parameter that receives a gradient; the rows give its time and peak memory, with ratios
to the plain model.
``--shapes small``: 128×128 (det, batch 1) and 64×64 (seg, batch 2) inputs (the pipeline check).
"""
import torch

from .harness import Case, SkipCase
from .registry import Benchmark

__all__ = ['FULL', 'SMALL', 'NUM_BOXES', 'skip_reason', 'model_config', 'variants', 'synthetic_samples', 'builder',
           'cases', 'BENCHMARK']

MODELS_CFG = dict(det='mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
                  seg='mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py')
FULL = dict(det=(2, 800, 1216), seg=(4, 512, 512))
SMALL = dict(det=(1, 128, 128), seg=(2, 64, 64))  # UPerNet's pooling module needs batch > 1 in training
NUM_BOXES = 3


def skip_reason(task):
    try:
        import mmdet  # noqa: F401
        import mmseg  # noqa: F401
    except ImportError as err:
        return f'needs mmdet and mmseg ({err})'
    return ''


def model_config(task, variant):
    """The model config of ``task`` with ``variant`` applied (``'plain'``: unchanged); SyncBN -> BN."""
    from mmengine.config import Config, ConfigDict

    from ..models.variants import CONFIG_VARIANTS, _plain
    cfg = Config.fromstring(f'_base_ = {MODELS_CFG[task]!r}', '.py')
    model = CONFIG_VARIANTS[variant].apply(cfg.model, cfg.default_scope) if variant != 'plain' else cfg.model
    return cfg.default_scope, ConfigDict(_no_sync_bn(_plain(model)))


def _no_sync_bn(node):
    if isinstance(node, dict):
        return {k: ('BN' if k == 'type' and v == 'SyncBN' else _no_sync_bn(v)) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(_no_sync_bn(v) for v in node)
    return node


def variants(task):
    """'plain' and the declared variants that apply to the task's model."""
    from mmengine.config import Config

    from ..models.variants import CONFIG_VARIANTS, VariantNotApplicable
    cfg = Config.fromstring(f'_base_ = {MODELS_CFG[task]!r}', '.py')
    names = ['plain']
    for name, variant in CONFIG_VARIANTS.items():
        try:
            variant.apply(cfg.model, cfg.default_scope)
        except VariantNotApplicable:
            continue
        names.append(name)
    return names


def synthetic_samples(task, b, h, w, device):
    """Data samples of a batch of b h×w images: 3 random boxes each (det), a random label map (seg)."""
    gen = torch.Generator().manual_seed(0)
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w),
                scale_factor=(1.0, 1.0))
    samples = []
    for _ in range(b):
        if task == 'det':
            from mmdet.structures import DetDataSample
            from mmengine.structures import InstanceData
            corner = torch.rand(NUM_BOXES, 2, generator=gen) * torch.tensor([w * 0.6, h * 0.6])
            size = (torch.rand(NUM_BOXES, 2, generator=gen) * 0.3 + 0.1) * torch.tensor([w, h])
            sample = DetDataSample(metainfo=meta)
            sample.gt_instances = InstanceData(bboxes=torch.cat([corner, corner + size], 1).to(device),
                                               labels=torch.randint(0, 80, (NUM_BOXES,), generator=gen).to(device))
        else:
            from mmengine.structures import PixelData
            from mmseg.structures import SegDataSample
            sample = SegDataSample(metainfo=meta)
            sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, h, w), generator=gen).to(device))
        samples.append(sample)
    return samples


def builder(task, variant, size, device):
    def build():
        from mmengine.registry import MODELS, DefaultScope, init_default_scope

        import mmdynconv  # noqa: F401  (registers the layers and backbones)
        scope, model_cfg = model_config(task, variant)
        init_default_scope(scope)
        torch.manual_seed(0)
        with DefaultScope.overwrite_default_scope(scope):
            try:
                model = MODELS.build(model_cfg).to(device).train()
            except Exception as err:  # report and measure the others
                raise SkipCase(f'building {variant} failed: {err!r}') from err
        b, h, w = size
        images = torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
        samples = synthetic_samples(task, b, h, w, device)

        def step():
            return model.parse_losses(model.loss(images, samples))[0]  # the summed losses, as train_step sums them

        step().backward()
        leaves = [p for p in model.parameters() if p.grad is not None]
        model.zero_grad(set_to_none=True)
        return step, leaves
    return build


def cases(settings):
    sizes = SMALL if settings.shapes == 'small' else FULL
    for dtype_name in settings.dtypes:
        if dtype_name != 'float32':
            print(f'models: measured in float32 only (skipping {dtype_name})')
            continue
        for task in ('det', 'seg'):
            skip = skip_reason(task)
            b, h, w = sizes[task]
            params = dict(model='Faster R-CNN R50-FPN' if task == 'det' else 'UPerNet R50', B=b, HW=f'{h}×{w}')
            for variant in (['plain'] if skip else variants(task)):
                yield Case(f'{task} {b}×{h}×{w}', variant, builder(task, variant, (b, h, w), settings.device),
                           skip=skip, params=params)


BENCHMARK = Benchmark(
    name='models', title='Whole models: one training step per layer variant', cases=cases, baselines=('plain',),
    description='One training step (the losses of a synthetic batch and their backward into every parameter) of '
                "mmdet's Faster R-CNN R50-FPN at 800×1216, batch 2, and mmseg's UPerNet R50 at 512×512, batch 4 "
                '(BN for SyncBN), plain and with each layer variant of `tools/compare_layers.py`; ratios to the '
                'plain model. The `fwd_ms` column is the loss computation without gradients.')
