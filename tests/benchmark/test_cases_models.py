"""The whole-model benchmark's cases (``tools/benchmark.py models``): which variants apply to which model, the model
configs it builds, the synthetic batches; not in ``--all``."""
import pytest
import torch

from mmdynconv.benchmark import cases_models
from mmdynconv.benchmark.cli import parse_args
from mmdynconv.benchmark.registry import ALL, MODULES
from mmdynconv.models.variants import CONFIG_VARIANTS

pytestmark = pytest.mark.openmmlab


def test_variants_per_model():
    assert cases_models.variants('det') == ['plain', *CONFIG_VARIANTS]               # ResNet-50 + FPN: all apply
    assert cases_models.variants('seg') == ['plain', *CONFIG_VARIANTS]               # upsamplers: in UPerHead
    scope, model = cases_models.model_config('seg', 'CARAFE')
    assert model.decode_head.type == 'UpsamplerUPerHead' and model.decode_head.norm_cfg.type == 'BN'


def test_model_configs_replace_sync_bn_and_apply_the_variant():
    scope, model = cases_models.model_config('seg', 'ODConv')
    assert scope == 'mmseg' and model.backbone.type == 'DynamicConvResNetV1c'
    assert 'SyncBN' not in repr(model) and model.decode_head.norm_cfg.type == 'BN'
    scope, model = cases_models.model_config('det', 'plain')
    assert scope == 'mmdet' and model.backbone.type == 'ResNet'


def test_synthetic_batches():
    det = cases_models.synthetic_samples('det', 2, 64, 96, 'cpu')
    assert len(det) == 2 and det[0].gt_instances.bboxes.shape == (cases_models.NUM_BOXES, 4)
    assert (det[0].gt_instances.bboxes[:, 2:] <= torch.tensor([96.0, 64.0])).all()   # inside the image
    seg = cases_models.synthetic_samples('seg', 1, 32, 32, 'cpu')
    assert seg[0].gt_sem_seg.data.shape == (1, 32, 32)


def test_opt_in_not_in_all():
    assert 'models' in MODULES and 'models' not in ALL
    assert parse_args(['models', '--shapes', 'small']).benchmarks == ['models']
