"""tools/compare_layers.py, demo preset: job expansion, per-run configs, resume rules, tables and plot, and a
--quick run (every run through the config runner)."""
import csv
import json
import os.path as osp

import pytest
from tool_runner import ROOT, run_tool

from experiments.demo_comparison.cells import finetune_jobs, pretrain_jobs, variants
from experiments.demo_comparison.plot import bar_plot
from experiments.demo_comparison.protocol import QUICK
from experiments.demo_comparison.report import markdown_table
from experiments.demo_comparison.runner import job_options, job_run
from mmdynconv.comparison.config_runner import run_config, run_queue, write_run_config


def test_jobs_cover_every_variant_init_and_seed_core_first():
    protocol = QUICK.with_seeds(det_seeds=(0, 1), seg_seeds=(0,))
    chosen = variants()
    jobs = finetune_jobs(chosen, protocol)
    assert len(jobs) == len({j.key for j in jobs}) == sum(len(v.inits) * (2 if v.task == 'det' else 1) for v in chosen)
    core = [v.name for v in chosen if v.task == 'det' and not v.optional]
    assert {'plain', 'DDF-Up neck', 'DDF-ResNet', 'FDConv-ResNet'} <= set(core)
    first = jobs[:2 * len(core)]  # seed 0 of every core detector variant, both inits, comes first
    assert {(j.task, j.seed) for j in first} == {('det', 0)} and {j.variant for j in first} == set(core)
    assert {j.pretrain for j in jobs if j.init == 'pretrained' and j.variant == 'DDF-ResNet'} == {'ddf'}
    assert {j.pretrain for j in jobs if j.init == 'scratch'} == {None}
    assert [j.key for j in pretrain_jobs(chosen)] == ['pretrain/plain/seed0', 'pretrain/ddf/seed0']
    assert jobs[0].key == 'det/plain/pretrained/seed0' and jobs[0].folder == 'det/plain/pretrained'
    with pytest.raises(ValueError, match='unknown names'):
        variants(names=['FDConv'])


def test_job_options_pretrained_vs_scratch(tmp_path):
    jobs = {(j.variant, j.init): j for j in finetune_jobs(variants(('det',)), QUICK)}
    pre = job_options(jobs['FDConv-ResNet', 'pretrained'], QUICK, str(tmp_path))
    backbone = pre['model']['backbone']
    assert backbone['init_cfg']['checkpoint'] == str(tmp_path / 'pretrained' / 'plain_backbone.pth')
    assert backbone['frozen_stages'] == 1 and backbone['norm_eval'] is True
    assert job_options(jobs['DDF-ResNet', 'pretrained'], QUICK, str(tmp_path))['model']['backbone']['init_cfg'][
        'checkpoint'].endswith('ddf_backbone.pth')
    scratch = job_options(jobs['FDConv-ResNet', 'scratch'], QUICK, str(tmp_path))
    assert 'model' not in scratch and scratch['train_cfg']['max_iters'] == QUICK.det.iters
    assert scratch['train_dataloader']['dataset']['data_root'] == str(tmp_path / 'data' / 'eval' / 'coco') + '/'


def test_job_config_is_the_config_file_with_the_options(tmp_path):
    """The run config is the variant's config file (its model, optimiser and hooks) with the protocol's entries."""
    from mmengine.config import Config
    jobs = {(j.variant, j.init): j for j in finetune_jobs(variants(('det',)), QUICK)}
    job = jobs['FDConv-ResNet KSM-BN-train', 'pretrained']
    run = job_run(job, QUICK, str(tmp_path))
    cfg = run_config(run.cfg, run.model, run.seed, str(tmp_path / job.key))
    own = Config.fromfile(job.config)
    assert cfg.model.neck == own.model.neck and cfg.optim_wrapper == own.optim_wrapper
    assert cfg.model.backbone.type == 'FDConvResNet' and cfg.model.backbone.frozen_stages == 1
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint=str(tmp_path / 'pretrained' /
                                                                                 'plain_backbone.pth'))
    assert [h.type for h in cfg.custom_hooks] == ['KSMNormTrainHook', 'DumpMetricsHook']
    assert cfg.randomness.seed == 0 and cfg.train_cfg.max_iters == QUICK.det.iters
    assert cfg.train_dataloader.batch_size == QUICK.det.batch_size
    assert run.metric == 'coco/bbox_mAP' and job_run(jobs['plain', 'scratch'], QUICK, str(tmp_path)).cfg.model == \
        Config.fromfile(jobs['plain', 'scratch'].config).model


def test_finished_run_from_another_config_is_an_error(tmp_path):
    job = finetune_jobs(variants(('det',)), QUICK)[0]
    run = job_run(job, QUICK, str(tmp_path))
    folder = tmp_path / job.key
    folder.mkdir(parents=True)
    (folder / 'result.json').write_text(json.dumps(dict(config_sha='0' * 16)))
    with pytest.raises(RuntimeError, match='was made from another config'):
        run_queue([run], str(tmp_path))
    _, sha = write_run_config(run.cfg, run.model, run.seed, str(tmp_path), run.variant)
    (folder / 'result.json').write_text(json.dumps(dict(config_sha=sha, value=0.5)))
    assert run_queue([run], str(tmp_path))[0]['value'] == 0.5  # finished: skipped, not rerun


def _result(task, variant, init, seed, value):
    return dict(task=task, variant=variant, init=init, seed=seed, value=value, wall_s=10.0,
                metric='coco/bbox_mAP' if task == 'det' else 'mIoU')


def test_table_and_plot(tmp_path):
    results = [_result('det', 'plain', 'pretrained', s, v) for s, v in enumerate((0.50, 0.54, 0.52))]
    results += [_result('det', 'FDConv-ResNet', 'pretrained', s, v) for s, v in enumerate((0.60, 0.62, 0.58))]
    results += [_result('det', 'plain', 'scratch', 0, 0.30), _result('seg', 'plain', 'scratch', 0, 70.25)]
    results[3]['max_grad_norm'], results[4]['max_grad_norm'] = 5e4, 30.0
    table = markdown_table(results)
    assert 'exceeded 1e+03' in table and 'FDConv-ResNet fine-tuned from pretrained seed 0 (5.0e+04)' in table
    assert 'seed 1 (' not in table
    assert '| plain | 52.0 ± 2.0 [n=3] | 30.0 [n=1] | 10 |' in table
    assert '| FDConv-ResNet | 60.0 ± 2.0 (+8.0) [n=3] | — | 10 |' in table
    assert 'semantic FPN' in table and '| plain | 70.2 [n=1] | 10 |' in table
    assert bar_plot(results, str(tmp_path / 'p.png')) == 2
    assert (tmp_path / 'p.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_bad_arguments(tmp_path, capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location('compare_layers', osp.join(ROOT, 'tools', 'compare_layers.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for args, message in ((['--tasks', 'cls'], '--tasks must be a comma-separated subset of det,seg'),
                          (['--inits', 'imagenet'], '--inits must be a comma-separated subset'),
                          (['--det-seeds', '0,0'], 'expected distinct comma-separated seeds'),
                          (['--jobs', '0'], '--jobs and --threads must be >= 1')):
        with pytest.raises(SystemExit) as exc:
            tool.parse_args(['--out', str(tmp_path), *args])
        assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_quick_comparison_end_to_end_and_resume(tmp_path):
    out = tmp_path / 'cmp'
    args = ('tools/compare_layers.py', '--out', str(out), '--quick', '--tasks', 'det', '--variants', 'FDConv-ResNet')
    assert run_tool(*args, '--dry-run').stdout.count('to do ') == 5
    first = run_tool(*args).stdout
    assert first.count('[compare] start') == 5 and 'FAILED' not in first  # pretraining + 2 variants x 2 inits
    with open(out / 'results.csv') as f:
        rows = list(csv.DictReader(f))
    assert {(r['variant'], r['init']) for r in rows} == {(v, i) for v in ('plain', 'FDConv-ResNet')
                                                         for i in ('pretrained', 'scratch')}
    assert all(0 <= float(r['value']) <= 1 and r['metric'] == 'coco/bbox_mAP' for r in rows)
    assert (out / 'comparison.png').is_file() and 'fine-tuned from pretrained' in (out / 'table.md').read_text()
    # the FDConv backbone took the plain pretrained weights: every kernel converted, only KSM / FBM missing
    log = (out / 'det/FDConv-ResNet/pretrained/seed0/train.log').read_text()
    missing = [k for line in log.splitlines() if 'missing keys in source state_dict' in line
               for k in line.split(':', 1)[1].split(',')]
    assert missing and all(('.ksm_' in k or '.fbm.' in k) for k in missing)
    assert osp.isfile(out / 'pretrained' / 'plain_backbone.pth')
    assert json.loads((out / 'pretrain/plain/seed0/result.json').read_text())['config_sha']
    second = run_tool(*args).stdout  # resumable: nothing reruns
    assert '[compare] start' not in second and '4 runs' in second
    report = run_tool(*args, '--inits', 'scratch', '--report').stdout  # the chosen cells only
    assert '2 runs' in report and 'fine-tuned from pretrained' not in (out / 'table.md').read_text()


def test_probe_tool_runs_from_the_clone():
    """tools/probe_fdconv_training.py is a thin entry point into experiments/fdconv_probe (not installed)."""
    proc = run_tool('tools/probe_fdconv_training.py', '--data', 'nowhere', check=False, timeout=300)
    assert proc.returncode == 2 and '--data must be a generated COCO folder' in proc.stdout, proc.stdout[-2000:]


def _one_adamw_step(conv, x, probe, lr_mult=1.0, weight_decay=0.0, zero_grad=False):
    """Relative kernel change of ``conv`` after one AdamW step (lr 1e-3) on ``(conv(x) * probe).sum()``."""
    import torch
    from mmengine.optim import build_optim_wrapper
    w0 = (conv.static_weight() if hasattr(conv, 'static_weight') else conv.weight).detach().clone()
    wrapper = build_optim_wrapper(torch.nn.ModuleDict(dict(conv=conv)), dict(
        optimizer=dict(type='AdamW', lr=1e-3, weight_decay=weight_decay),
        paramwise_cfg=dict(custom_keys={'spectrum': dict(lr_mult=lr_mult, decay_mult=1 / lr_mult)})))
    loss = (conv(x) * probe).sum() * (0.0 if zero_grad else 1.0)
    wrapper.update_params(loss)
    w1 = conv.static_weight() if hasattr(conv, 'static_weight') else conv.weight
    return ((w1.detach() - w0).norm() / w0.norm()).item()


def test_adamw_moves_the_fdconv_kernel_by_the_spectrum_step_gain():
    """The FDConv investigation's finding, checked on one layer: the same AdamW step moves an FDConv kernel by the
    spectrum step gain (≈ 0.235 for a square 3×3 layer) times a plain conv's move; lr_mult = 1 / gain (with
    decay_mult = gain) equalises it; decoupled weight decay shrinks both kernels identically."""
    import torch

    from experiments.fdconv_probe.probe import spectrum_step_gain
    from mmdynconv.layers.fdconv import FDConv
    torch.manual_seed(0)
    gain = spectrum_step_gain(32, 32, 3)['gain']
    assert gain == pytest.approx(0.235, abs=0.01)
    x, probe = torch.randn(4, 32, 8, 8), torch.randn(4, 32, 8, 8)

    def pair():
        fd = FDConv(32, 32, 3, padding=1, bias=False)
        plain = torch.nn.Conv2d(32, 32, 3, padding=1, bias=False)
        plain.weight.data.copy_(fd.static_weight().detach())
        return fd, plain
    fd, plain = pair()
    ratio = _one_adamw_step(fd, x, probe) / _one_adamw_step(plain, x, probe)
    assert ratio == pytest.approx(gain, rel=0.15)
    fd, plain = pair()
    ratio = _one_adamw_step(fd, x, probe, lr_mult=1 / gain) / _one_adamw_step(plain, x, probe)
    assert ratio == pytest.approx(1.0, rel=0.15)
    fd, plain = pair()
    decay = [_one_adamw_step(c, x, probe, weight_decay=0.05, zero_grad=True) for c in (fd, plain)]
    assert decay[0] == pytest.approx(decay[1], rel=1e-4) and decay[1] == pytest.approx(1e-3 * 0.05, rel=1e-3)


def test_ksm_norms_stay_in_training_mode_with_the_hook():
    """Under norm_eval=True (mmdet's fine-tuning default) with the release's behaviour (ksm_norm_eval=True) every
    BatchNorm is in eval mode, the KSM ones included, although they have no pretrained statistics; ksm_norms_train
    (KSMNormTrainHook, and the backbone's default ksm_norm_eval=False) undoes that for the KSM BatchNorms only."""
    from mmdynconv.layers.kernel_spatial_modulation import ksm_norms_train
    from mmdynconv.models.backbones import FDConvResNet
    net = FDConvResNet(depth=50, base_channels=8, frozen_stages=1, norm_eval=True, ksm_norm_eval=True,
                       fdconv_cfg=dict(type='FDConv', kernel_num=4, dynamic_min_channels=4))
    net.train()
    ksm = [n for n, m in net.named_modules() if n.endswith('ksm_global.norm')]
    assert len(ksm) == 48 and not any(dict(net.named_modules())[n].training for n in ksm)
    assert ksm_norms_train(net) == 48
    modules = dict(net.named_modules())
    assert all(modules[n].training for n in ksm)
    assert not modules['layer2.0.bn1'].training and not modules['layer1.0.bn1'].training
