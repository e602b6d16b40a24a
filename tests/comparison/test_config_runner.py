"""tools/compare_layers.py --config: the variants' config transforms (RetinaNet / FCOS R18, UPerNet V1c-18, semantic
FPN, SegFormer) and their refusals, file variants (--variant-config), the per-run configs and commands, an end-to-end
run with mid-run resume, and a two-process gloo run through torch.distributed.run."""
import csv
import json
import os.path as osp

import pytest
from mmengine.config import Config
from tool_runner import ROOT, run_tool

from mmdynconv.comparison.config_runner import ConfigRefused, plan_variants, run_config, task_scope, train_command
from mmdynconv.models.variants import CONFIG_VARIANTS, VariantNotApplicable, applicable_variants
from mmdynconv.ops.compat import HAS_CUSTOM_OP

RETINANET = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'
FCOS = 'mmdet::fcos/fcos_r18_fpn_gn-head-center-normbbox-centeronreg-giou_8xb8-amp-lsj-200e_coco.py'
UPERNET = 'mmseg::upernet/upernet_r18_4xb4-80k_ade20k-512x512.py'
SEMFPN = 'mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py'
EXAMPLE = osp.join(ROOT, 'configs', 'compare', 'retinanet_r18_fpn_shapes96.py')
BACKBONE = [n for n, v in CONFIG_VARIANTS.items() if v.part == 'backbone']
NECK = [n for n, v in CONFIG_VARIANTS.items() if v.part == 'neck']


def _cfg(base, extra=''):
    return Config.fromstring(f'_base_ = {base!r}\n{extra}\n', '.py')


def test_declared_variants():
    assert {'FDConv', 'ODConv', 'CondConv', 'DY-Conv', 'DDF'} <= set(BACKBONE)
    assert {'DDF-Up', 'CARAFE', 'DySample'} <= set(NECK)


@pytest.mark.parametrize('base', [RETINANET, FCOS])
def test_detectors_with_resnet18(base):
    cfg = _cfg(base)
    done, refused = applicable_variants(cfg.model, 'mmdet')
    assert set(done) == set(CONFIG_VARIANTS) - {'DDF'}
    assert 'DDF' in refused and 'model.backbone.depth' in refused['DDF'] and 'Bottleneck' in refused['DDF']
    fd = done['FDConv']['backbone']
    assert fd['type'] == 'FDConvResNet' and fd['depth'] == 18 and fd['fdconv_cfg']['type'] == 'FDConv'
    assert fd['init_cfg'] == cfg.model.backbone.init_cfg.to_dict()  # the pretrained checkpoint is kept
    assert done['ODConv']['backbone']['type'] == 'DynamicConvResNet'
    assert done['ODConv']['backbone']['block_conv_cfg']['type'] == 'ODConv'
    for name in NECK:
        neck, plain = done[name]['neck'], cfg.model.neck.to_dict()
        assert neck['type'] == 'UpsamplerFPN' and neck['upsample_cfg']['type']  # the variant's upsampler
        assert {k: v for k, v in neck.items() if k not in ('type', 'upsample_cfg')} == \
            {k: v for k, v in plain.items() if k not in ('type', 'upsample_cfg')}
        assert done[name]['backbone'] == plain_backbone(cfg) and done[name]['bbox_head'] == \
            cfg.model.bbox_head.to_dict()  # one change only


def plain_backbone(cfg):
    return cfg.model.backbone.to_dict()


def test_fcos_variant_models_build_and_run():
    """The transformed FCOS R18 configs build, and the FDConv / DDF-Up ones give the plain model's output shapes."""
    import torch
    from mmdet.registry import MODELS
    from mmengine.config import ConfigDict
    from mmengine.registry import DefaultScope, init_default_scope
    cfg = _cfg(FCOS)
    init_default_scope('mmdet')
    done, _ = applicable_variants(cfg.model, 'mmdet', ['FDConv', 'DDF-Up'])
    x = torch.randn(1, 3, 64, 64)
    shapes = []
    with DefaultScope.overwrite_default_scope('mmdet'):
        for model_cfg in (cfg.model.to_dict(), done['FDConv'], done['DDF-Up']):
            model_cfg['backbone']['init_cfg'] = None
            model = MODELS.build(ConfigDict(model_cfg)).eval()
            with torch.no_grad():
                shapes.append([tuple(f.shape) for f in model.extract_feat(x)])
    assert shapes[0] == shapes[1] == shapes[2] and len(shapes[0]) == 5


def test_upernet_resnet_v1c_18():
    cfg = _cfg(UPERNET)
    done, refused = applicable_variants(cfg.model, 'mmseg')
    assert set(done) == set(CONFIG_VARIANTS) - {'DDF'} and set(refused) == {'DDF'}
    assert done['FDConv']['backbone']['type'] == 'FDConvResNetV1c'
    assert done['CondConv']['backbone']['type'] == 'DynamicConvResNetV1c'
    plain_head = cfg.model.decode_head.to_dict()
    for name in NECK:  # UPerNet has no neck: the upsamplers go into UPerHead's own top-down path
        head = done[name]['decode_head']
        assert head['type'] == 'UpsamplerUPerHead' and head['upsample_cfg']['type']
        assert {k: v for k, v in head.items() if k not in ('type', 'upsample_cfg')} == \
            {k: v for k, v in plain_head.items() if k != 'type'}
        assert done[name]['backbone'] == plain_backbone(cfg) and 'neck' not in done[name]
    models, _ = plan_variants(cfg, ['FDConv', 'DDF-Up'])
    assert list(models) == ['plain', 'FDConv', 'DDF-Up']
    with pytest.raises(ConfigRefused, match="'DDF' cannot transform this config: it needs model.backbone.depth"):
        plan_variants(cfg, ['FDConv', 'DDF'])


def test_segformer_head_and_heads_without_a_top_down_path():
    segformer = _cfg('mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py')
    head = CONFIG_VARIANTS['FADE'].apply(segformer.model, 'mmseg')['decode_head']
    assert head['type'] == 'UpsamplerSegformerHead' and head['upsample_cfg']['type'] == 'fade'
    deeplab = _cfg('mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-80k_ade20k-512x512.py')   # ASPPHead: no top-down path
    with pytest.raises(VariantNotApplicable, match="'CARAFE' cannot transform this config: it needs model.neck of "
                                                   "type mmdet / mmseg 'FPN'.*'UPerHead' / 'SegformerHead'"):
        CONFIG_VARIANTS['CARAFE'].apply(deeplab.model, 'mmseg')


def test_upernet_upsampler_variant_builds_and_trains():
    import torch
    from mmengine.config import ConfigDict
    from mmengine.registry import DefaultScope, init_default_scope
    from mmseg.registry import MODELS
    cfg = _cfg(UPERNET)
    init_default_scope('mmseg')
    model_cfg = CONFIG_VARIANTS['SAPA'].apply(cfg.model, 'mmseg')
    model_cfg['backbone']['init_cfg'] = None
    model_cfg['backbone']['norm_cfg'] = model_cfg['decode_head']['norm_cfg'] = dict(type='BN', requires_grad=True)
    model_cfg['auxiliary_head']['norm_cfg'] = dict(type='BN', requires_grad=True)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(ConfigDict(model_cfg)).train()
    assert type(model.decode_head).__name__ == 'UpsamplerUPerHead' and len(model.decode_head.upsamplers) == 3
    x = torch.randn(2, 3, 64, 64)
    out = model.decode_head(model.extract_feat(x))
    assert out.shape == (2, 150, 16, 16)
    out.mean().backward()


def test_mmseg_fpn_translation_and_v1d():
    cfg = _cfg(SEMFPN, "model = dict(neck=dict(end_level=3, add_extra_convs=True, extra_convs_on_inputs=False))")
    neck = CONFIG_VARIANTS['DySample'].apply(cfg.model, 'mmseg')['neck']
    assert neck['end_level'] == 2 and neck['add_extra_convs'] == 'on_output' and 'extra_convs_on_inputs' not in neck
    assert CONFIG_VARIANTS['DDF'].apply(cfg.model, 'mmseg')['backbone']['dcn']['type'] == 'DDF'  # ResNetV1c-50
    v1d = _cfg(RETINANET, "model = dict(backbone=dict(type='ResNetV1d', depth=50))")
    backbone = CONFIG_VARIANTS['FDConv'].apply(v1d.model, 'mmdet')['backbone']
    assert backbone['type'] == 'FDConvResNet' and backbone['deep_stem'] and backbone['avg_down']


@pytest.mark.parametrize('extra,part', [
    ("model = dict(backbone=dict(_delete_=True, type='SwinTransformer'))", 'model.backbone'),
    ("model = dict(backbone=dict(depth=50, dcn=dict(type='DCNv2', deform_groups=1), "
     "stage_with_dcn=(False, True, True, True)))", 'model.backbone.dcn'),
    ("model = dict(backbone=dict(type='FDConvResNet'))", 'model.backbone'),
    ("model = dict(neck=dict(type='PAFPN'))", 'model.neck'),
])
def test_refusals_name_the_variant_and_the_part(extra, part):
    cfg = _cfg(RETINANET, extra)
    variant = 'DDF-Up' if 'neck' in part else 'ODConv'
    with pytest.raises(VariantNotApplicable, match=f"variant '{variant}' cannot transform this config: it needs "
                                                   f"{part.replace('.', '[.]')} "):
        CONFIG_VARIANTS[variant].apply(cfg.model, 'mmdet')
    with pytest.raises(ValueError, match='unknown variant names'):
        applicable_variants(cfg.model, 'mmdet', ['FDConv-ResNet'])


def test_cli_refuses_before_running(tmp_path, capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location('compare_layers', osp.join(ROOT, 'tools', 'compare_layers.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    config = tmp_path / 'upernet.py'
    config.write_text(f'_base_ = {UPERNET!r}\n')
    out = tmp_path / 'out'
    assert tool.main(['--config', str(config), '--variants', 'FDConv,DDF', '--out', str(out)]) == 2
    err = capsys.readouterr().err
    assert "variant 'DDF' cannot transform this config: it needs model.backbone.depth" in err and not out.exists()
    for args, message in ((['--quick'], '--quick: options of the demo preset'),
                          (['--preset', 'demo'], 'exclude each other'),
                          (['--gpus', '2'], 'need --launcher pytorch')):
        with pytest.raises(SystemExit):
            tool.parse_args(['--config', str(config), '--out', str(out), *args])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.parse_args(['--out', str(out), '--seeds', '0,1'])
    assert '--seeds: options of --config' in capsys.readouterr().err


def test_run_config_and_commands(tmp_path):
    cfg = Config.fromfile(EXAMPLE)
    assert task_scope(cfg) == 'mmdet'
    run = run_config(cfg, CONFIG_VARIANTS['DDF-Up'].apply(cfg.model, 'mmdet'), 3, str(tmp_path))
    assert run.randomness.seed == 3 and run.train_dataloader.sampler.seed == 3
    assert run.model.neck.type == 'UpsamplerFPN' and run.work_dir == str(tmp_path)
    assert run.custom_hooks[-1] == dict(type='DumpMetricsHook', out_file=str(tmp_path / 'metrics.json'))
    assert 'mmdynconv.comparison.metrics_hook' in run.custom_imports.imports
    assert run.train_cfg == cfg.train_cfg and run.optim_wrapper == cfg.optim_wrapper  # everything else as given
    cmd = train_command('c.py', str(tmp_path), python='py')
    assert cmd == ['py', osp.join(ROOT, 'tools', 'train.py'), 'c.py', '--work-dir', str(tmp_path)]
    (tmp_path / 'last_checkpoint').write_text('x')
    cmd = train_command('c.py', str(tmp_path), 'pytorch', gpus=8, nnodes=2, node_rank=1, master_addr='10.0.0.1',
                        python='py')
    assert cmd[:8] == ['py', '-m', 'torch.distributed.run', '--nnodes=2', '--node_rank=1', '--master_addr=10.0.0.1',
                       '--master_port=29500', '--nproc_per_node=8']
    assert cmd[-3:] == ['--resume', '--launcher', 'pytorch']


def _data_options(demo_data):
    root = f'{demo_data}/coco/'
    ann = root + 'annotations/instances_val2017.json'
    return [f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}', f'val_evaluator.ann_file={ann}',
            f'test_evaluator.ann_file={ann}', 'train_dataloader.batch_size=2', 'val_dataloader.batch_size=2',
            'model.test_cfg.score_thr=0.0']


@pytest.mark.slow
def test_config_comparison_end_to_end_and_resume(tmp_path, demo_data):
    out = tmp_path / 'cmp'
    args = ['tools/compare_layers.py', '--config', EXAMPLE, '--variants', 'DDF-Up,DySample', '--out', str(out),
            '--cost-iters', '1', '--cfg-options', 'train_cfg.max_iters=4', 'train_cfg.val_interval=4',
            'default_hooks.checkpoint.interval=2', 'default_hooks.checkpoint.max_keep_ckpts=2',
            *_data_options(demo_data)]
    first = run_tool(*args).stdout
    assert first.count('[compare] start') == 3 and 'FAILED' not in first
    assert "skipped: variant 'DDF'" not in first  # named variants only: the others are not listed
    with open(out / 'results.csv') as f:
        rows = list(csv.DictReader(f))
    assert [r['variant'] for r in rows] == ['plain', 'DDF-Up', 'DySample']
    assert all(r['metric'] == 'coco/bbox_mAP' and 0 <= float(r['value']) <= 1 for r in rows)
    assert float(rows[0]['params_ratio']) == 1.0 and float(rows[1]['params_ratio']) > 1.0
    assert all(float(r['train_step_ms']) > 0 and float(r['infer_img_s']) > 0 for r in rows)
    # FLOPs need the ops' custom-op nodes (torch >= 2.4); before, the cell is empty and the table says why
    assert all((float(r['flops']) > 0) if HAS_CUSTOM_OP else r['flops'] == '' for r in rows)
    table = (out / 'table.md').read_text()
    assert '| plain | the config as given |' in table and '| DDF-Up | DDF-Up' in table and '×' in table
    assert (out / 'cost.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    # an interrupted run: its result and its last checkpoint gone, the iteration-2 checkpoint left
    work = out / 'DDF-Up' / 'seed0'
    for name in ('result.json', 'metrics.json', 'iter_4.pth'):
        (work / name).unlink()
    (work / 'last_checkpoint').write_text(str(work / 'iter_2.pth'))
    second = run_tool(*args).stdout
    assert second.count('[compare] start') == 0 and second.count('[compare] resume DDF-Up seed 0') == 1
    log = (work / 'train.log').read_text()
    assert 'resumed' in log.lower() and 'Iter(train) [4/4]' in log
    assert json.loads((work / 'result.json').read_text())['metrics']['iter'] == 4


@pytest.mark.slow
def test_two_process_gloo_run_through_the_launcher(tmp_path, demo_data):
    out = tmp_path / 'dist'
    proc = run_tool('tools/compare_layers.py', '--config', EXAMPLE, '--variants', 'DySample', '--out', str(out),
                    '--launcher', 'pytorch', '--gpus', '2', '--master-port', '29631', '--cost-iters', '1',
                    '--cfg-options', 'train_cfg.max_iters=2', 'train_cfg.val_interval=2', *_data_options(demo_data))
    assert proc.stdout.count('[compare] done') == 2
    log = (out / 'DySample' / 'seed0' / 'train.log').read_text()
    assert 'Distributed launcher: pytorch' in log and 'Distributed training: True' in log
    assert log.count("distributed backend 'nccl' replaced by 'gloo'") == 2  # one line per process


def test_demo_preset_without_experiments_says_so(monkeypatch, capsys):
    """Installed from a wheel (no experiments/), --config works and the demo preset says why it cannot run."""
    import sys

    from mmdynconv.comparison import cli
    for name in ['experiments', 'experiments.demo_comparison', 'experiments.demo_comparison.protocol',
                 'experiments.demo_comparison.runner']:
        monkeypatch.setitem(sys.modules, name, None)   # None in sys.modules: the import fails, even if cached
    assert cli.main(['--out', '/tmp/unused', '--dry-run']) == 2
    assert 'the demo preset is experiment code that runs from a clone' in capsys.readouterr().err


def test_docs_variants_table_is_the_list_variants_output():
    """docs/comparison.md's variants table is ``tools/compare_layers.py --list-variants`` (regenerate it when a
    layer's declaration changes)."""
    from mmdynconv.comparison.cli import variants_table
    text = open(osp.join(ROOT, 'docs', 'comparison.md')).read()
    start = text.index('<!-- variants table: python tools/compare_layers.py --list-variants -->\n')
    end = text.index('<!-- end variants table -->')
    assert text[start:end].split('\n', 1)[1] == variants_table(), 'run python tools/compare_layers.py --list-variants'


def test_variant_hooks_join_the_run_config(tmp_path):
    """A variant's declared hooks (KernelWarehouse: its temperature schedule) are added to its runs' custom_hooks;
    a hook type the user's config already has is left as the user set it; other variants' configs are unchanged."""
    from mmdynconv.comparison.config_runner import load_user_config, run_config, with_hooks
    from mmdynconv.models.variants import CONFIG_VARIANTS
    hooks = CONFIG_VARIANTS['KernelWarehouse'].hooks
    assert hooks == (dict(type='TemperatureAnnealHook', start=1.0, end=0.0, anneal=1),)
    cfg = load_user_config(EXAMPLE)
    assert with_hooks(cfg, ()) is cfg and not CONFIG_VARIANTS['ODConv'].hooks
    run = run_config(with_hooks(cfg, hooks), cfg.model, 0, str(tmp_path))
    assert [h['type'] for h in run.custom_hooks] == ['TemperatureAnnealHook', 'DumpMetricsHook']
    mine = with_hooks(cfg, [dict(type='TemperatureAnnealHook', start=5.0)])
    assert with_hooks(mine, hooks).custom_hooks == [dict(type='TemperatureAnnealHook', start=5.0)]
