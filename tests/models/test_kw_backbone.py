"""KernelWarehouse backbones KWResNet (mmdet) and KWResNetV1c (mmseg): one warehouse per stage shared by its convs
(the release's assignment), parameters and state dict keys stored once, gradients accumulating in the shared cells,
plain ResNet checkpoints, frozen stages, the published parameter counts and argument errors."""
import copy
import importlib
import io
import pickle

import pytest
import torch
from mmengine.registry import DefaultScope
from torch import nn

from mmdynconv.layers import KernelWarehouseConv, TemperatureAnnealHook

pytestmark = pytest.mark.openmmlab


def build(scope, type_name, **kwargs):
    registry = importlib.import_module(f'{scope}.registry').MODELS
    importlib.import_module(f'{scope}.models')
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(dict(type=type_name, **kwargs))


def kw_convs(model):
    return {name: m for name, m in model.named_modules() if isinstance(m, KernelWarehouseConv)}


def small(scope='mmdet', type_name='KWResNet', seed=0, **kwargs):
    torch.manual_seed(seed)
    args = dict(depth=50, base_channels=16, norm_eval=False, kw_cfg=dict(type='KernelWarehouse'))
    return build(scope, type_name, **dict(args, **kwargs))


def test_resnet50_release_assignment():
    model = small()
    convs = kw_convs(model)
    assert list(model.warehouses) == ['layer1', 'layer2', 'layer3', 'layer4']
    assert len(convs) == 16 * 3 - 1 + 3                              # all block convs but layer1.0.conv1, 3 shortcuts
    assert type(model.layer1[0].conv1) is nn.Conv2d and type(model.layer1[0].downsample[0]) is nn.Conv2d
    for stage in (2, 3, 4):
        first = getattr(model, f'layer{stage}')[0]
        previous = model.warehouses[f'layer{stage - 1}']
        assert first.conv1.warehouse is previous and first.downsample[0].warehouse is previous
        assert first.conv2.warehouse is first.conv3.warehouse is model.warehouses[f'layer{stage}']
    slots = {name: len(w.kernel_shapes) for name, w in model.warehouses.items()}
    assert slots == dict(layer1=10, layer2=13, layer3=19, layer4=8)
    for warehouse in model.warehouses.values():   # each slot's conv, in module order
        users = sorted((m.warehouse_slot, name) for name, m in convs.items() if m.warehouse is warehouse)
        assert [s for s, _ in users] == list(range(len(warehouse.kernel_shapes)))
    assert model.warehouses['layer1'].num_cells == 9 + 4 + 2 * (4 + 9 + 4) + 4 * 2 + 4 * 8
    assert all(m.shares_warehouse for m in convs.values())


def test_without_handover_every_block_conv_uses_its_stage():
    model = small(handover=False)
    convs = kw_convs(model)
    assert len(convs) == 48 and all(type(m.downsample[0]) is nn.Conv2d for m in
                                    (model.layer1[0], model.layer2[0], model.layer3[0], model.layer4[0]))
    for name, m in convs.items():
        assert m.warehouse is model.warehouses[name.split('.')[0]], name


def test_stage_flags_cover_the_convs_of_each_warehouse():
    model = small(stage_with_kw=(False, True, True, True))
    assert list(model.warehouses) == ['layer2', 'layer3', 'layer4']
    assert not any(n.startswith('layer1.') for n in kw_convs(model))
    assert type(model.layer2[0].conv1) is nn.Conv2d and type(model.layer2[0].downsample[0]) is nn.Conv2d
    assert model.layer2[0].conv2.warehouse is model.warehouses['layer2']


def test_parameters_and_state_dict_keys_are_stored_once_and_round_trip():
    model = small()
    params = list(model.parameters())
    named = dict(model.named_parameters(remove_duplicate=False))
    assert len(named) == len(params) == len({p.data_ptr() for p in params})
    state = model.state_dict()
    assert sorted(k for k in state if 'cells' in k) == [f'warehouses.layer{i}.cells' for i in (1, 2, 3, 4)]
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    fresh = small(seed=1)
    fresh.load_state_dict(torch.load(buffer), strict=True)
    x = torch.randn(2, 3, 64, 48)
    for training in (False, True):
        model.train(training)
        fresh.train(training)
        with torch.no_grad():
            for a, b in zip(fresh(x), model(x)):
                assert torch.equal(a, b)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert clone.layer2[0].conv1.warehouse is clone.warehouses['layer1']
        assert clone.layer3[1].conv2.warehouse is clone.warehouses['layer3']
        assert clone.warehouses['layer1'] is not model.warehouses['layer1']
        with torch.no_grad():
            assert all(torch.equal(a, b) for a, b in zip(clone(x), model(x)))


def test_gradients_from_every_conv_reach_the_shared_cells():
    model = small()
    model.train()
    sum(o.square().mean() for o in model(torch.randn(2, 3, 64, 64))).backward()
    for warehouse in model.warehouses.values():
        grad = warehouse.cells.grad
        for slot, (first, span) in enumerate(zip(warehouse.first_cells, warehouse.spans)):
            assert grad[first:first + span].abs().sum() > 0, slot
    # the handed-over convs (layer2.0.conv1, layer2.0.downsample) train layer1's warehouse
    wh = model.warehouses['layer1']
    assert model.layer2[0].conv1.warehouse_slot == 8 and model.layer2[0].downsample[0].warehouse_slot == 9
    assert wh.first_cells[8] == wh.num_cells - 8 - 32


@pytest.mark.parametrize('kw_cfg,exact', [(dict(cell_num_ratio=1), True), (dict(cell_num_ratio=4), True),
                                          (dict(cell_num_ratio=0.5, cell_in_ratio=0.5, cell_out_ratio=0.5), False)])
def test_a_plain_resnet_checkpoint_starts_at_the_plain_network(tmp_path, kw_cfg, exact):
    from mmdet.models.backbones import ResNet
    torch.manual_seed(0)
    plain = ResNet(depth=50, base_channels=16, norm_eval=False, zero_init_residual=False)
    plain.init_weights()
    path = tmp_path / 'resnet.pth'
    torch.save(plain.state_dict(), path)
    model = small(kw_cfg=dict(type='KernelWarehouse', **kw_cfg), init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert all(m.temperature == 1.0 for m in kw_convs(model).values())
    result = small(kw_cfg=dict(type='KernelWarehouse', **kw_cfg)).load_state_dict(plain.state_dict(), strict=False)
    assert not result.unexpected_keys and all('.attention.' in k for k in result.missing_keys)
    x = torch.randn(2, 3, 64, 48)
    for training in (True, False):
        model.train(training)
        plain.train(training)
        with torch.no_grad():
            errors = [(a - b).abs().max().item() / b.abs().max().item() for a, b in zip(model(x), plain(x))]
        assert (max(errors) < 1e-5) == exact, errors


def test_frozen_stage_keeps_its_attention_and_the_warehouses_trainable():
    model = small(frozen_stages=1, norm_eval=True)
    model.train()
    for name, p in model.layer1.named_parameters():
        assert p.requires_grad == ('.attention.' in name and '.norm.' not in name or '.attention.norm.' in name), name
    assert all(p.requires_grad for p in model.warehouses.parameters())
    assert not model.layer1.training and not model.layer2[0].conv2.attention.norm.training   # norm_eval
    assert model.layer2[0].conv2.attention.fc2.training


def test_temperature_hook_sets_every_conv():
    model = small()
    assert TemperatureAnnealHook.set_temperature(model, 0.5) == 50
    assert {m.temperature for m in kw_convs(model).values()} == {0.5}


@pytest.mark.slow
@pytest.mark.parametrize('depth,kw_cfg,published', [
    (50, dict(cell_num_ratio=1), 28.05), (50, dict(cell_num_ratio=4), 102.02),
    (50, dict(cell_num_ratio=0.5, cell_in_ratio=0.5, cell_out_ratio=0.5, nonlocal_basis_ratio=0.0625), 17.64),
    (18, dict(cell_num_ratio=1), 11.93), (18, dict(cell_num_ratio=0.5, cell_in_ratio=0.5, cell_out_ratio=0.5), 7.43)])
def test_parameter_counts_are_the_releases(depth, kw_cfg, published):
    """The release README's ImageNet model sizes (M, with the 1000-class fc, which mmdet's backbone lacks)."""
    model = build('mmdet', 'KWResNet', depth=depth, kw_cfg=dict(type='KernelWarehouse', **kw_cfg))
    width = 2048 if depth == 50 else 512
    total = sum(p.numel() for p in model.parameters()) + width * 1000 + 1000
    assert round(total / 1e6, 2) == published


def test_resnet18_basic_blocks():
    model = small(depth=18, base_channels=16)
    convs = kw_convs(model)
    assert len(convs) == 16 + 3 and model.layer1[0].conv1.warehouse is model.warehouses['layer1']   # as the release
    assert model(torch.randn(2, 3, 64, 32))[-1].shape == (2, 128, 2, 1)


@pytest.mark.parametrize('scope,type_name,plain_type', [('mmdet', 'KWResNet', 'ResNet'),
                                                        ('mmseg', 'KWResNetV1c', 'ResNetV1c')])
def test_builds_in_both_scopes_and_starts_plain(scope, type_name, plain_type):
    torch.manual_seed(0)
    plain = build(scope, plain_type, depth=18, base_channels=16, norm_eval=False)
    model = small(scope, type_name, depth=18)
    model.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 3, 32, 40)
    model.eval()
    plain.eval()
    with torch.no_grad():
        for a, b in zip(model(x), plain(x)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_the_comparison_variant_builds_the_backbone():
    from mmengine.config import Config

    from mmdynconv.models.variants import CONFIG_VARIANTS
    cfg = Config.fromstring("_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'", '.py')
    backbone = CONFIG_VARIANTS['KernelWarehouse'].apply(cfg.model, 'mmdet')['backbone']
    assert backbone['type'] == 'KWResNet' and backbone['kw_cfg'] == dict(type='KernelWarehouse', cell_num_ratio=1)
    backbone.update(init_cfg=None, base_channels=16)
    assert len(kw_convs(build('mmdet', backbone.pop('type'), **backbone))) == 50


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(kw_cfg=dict(type='ODConv')), ValueError, "kw_cfg must be a dict with type='KernelWarehouse'"),
    (dict(stage_with_kw=(True, True)), ValueError, r'stage_with_kw must have one flag per stage \(4\)'),
    (dict(handover=1), TypeError, 'handover must be a bool'),
    (dict(dcn=dict(type='DCN', deform_groups=1), stage_with_dcn=(False, True, False, False)), ValueError,
     r'layer2.0.conv2 is .*not a plain nn.Conv2d'),
    (dict(kw_cfg=dict(type='KernelWarehouse', cell_num_ratio=3.5)), ValueError, 'cell_num_ratio must be'),
])
def test_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        small(**kwargs)
