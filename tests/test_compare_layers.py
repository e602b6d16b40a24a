"""tools/compare_layers.py: job expansion, per-run configs, resume rules, tables and plot, and a --quick run."""
import csv
import json
import os.path as osp
from dataclasses import asdict

import pytest
from tool_runner import run_tool

from mmdynconv.comparison import QUICK, bar_plot, finetune_jobs, markdown_table, pretrain_jobs, variants
from mmdynconv.comparison.runner import job_config, run_job


def test_jobs_cover_every_variant_init_and_seed_core_first():
    protocol = QUICK.with_seeds(det_seeds=(0, 1), seg_seeds=(0,))
    chosen = variants()
    jobs = finetune_jobs(chosen, protocol)
    assert len(jobs) == len({j.key for j in jobs}) == sum(2 * (2 if v.task == 'det' else 1) for v in chosen)
    core = [v.name for v in chosen if v.task == 'det' and not v.optional]
    assert {'plain', 'DDF-Up neck', 'DDF-ResNet', 'FDConv-ResNet'} <= set(core)
    first = jobs[:2 * len(core)]  # seed 0 of every core detector variant, both inits, comes first
    assert {(j.task, j.seed) for j in first} == {('det', 0)} and {j.variant for j in first} == set(core)
    assert {j.pretrain for j in jobs if j.init == 'pretrained' and j.variant == 'DDF-ResNet'} == {'ddf'}
    assert {j.pretrain for j in jobs if j.init == 'scratch'} == {None}
    assert [j.pretrain for j in pretrain_jobs(chosen)] == ['plain', 'ddf']
    with pytest.raises(ValueError, match='unknown names'):
        variants(names=['FDConv'])


def test_job_config_pretrained_vs_scratch(tmp_path):
    jobs = {(j.variant, j.init): j for j in finetune_jobs(variants(('det',)), QUICK)}
    pre = job_config(jobs['FDConv-ResNet', 'pretrained'], QUICK, str(tmp_path))
    backbone = pre['model']['backbone']
    assert backbone['init_cfg']['checkpoint'] == str(tmp_path / 'pretrained' / 'plain_backbone.pth')
    assert backbone['frozen_stages'] == 1 and backbone['norm_eval'] is True
    assert job_config(jobs['DDF-ResNet', 'pretrained'], QUICK, str(tmp_path))['model']['backbone']['init_cfg'][
        'checkpoint'].endswith('ddf_backbone.pth')
    scratch = job_config(jobs['FDConv-ResNet', 'scratch'], QUICK, str(tmp_path))
    assert 'model' not in scratch and scratch['randomness'] == dict(seed=0)
    assert scratch['train_cfg']['max_iters'] == QUICK.det.iters
    assert scratch['train_dataloader']['dataset']['data_root'] == str(tmp_path / 'data' / 'eval' / 'coco') + '/'


def test_finished_run_from_another_schedule_is_an_error(tmp_path):
    job = finetune_jobs(variants(('det',)), QUICK)[0]
    folder = tmp_path / job.key
    folder.mkdir(parents=True)
    (folder / 'result.json').write_text(json.dumps(dict(schedule=dict(iters=999))))
    with pytest.raises(RuntimeError, match='was made with schedule'):
        run_job(job, QUICK, str(tmp_path))
    (folder / 'result.json').write_text(json.dumps(dict(schedule=asdict(QUICK.det), value=0.5)))
    assert run_job(job, QUICK, str(tmp_path))['value'] == 0.5  # finished: skipped, not rerun


def _result(task, variant, init, seed, value):
    return dict(task=task, variant=variant, init=init, seed=seed, value=value, wall_s=10.0,
                metric='coco/bbox_mAP' if task == 'det' else 'mIoU')


def test_table_and_plot(tmp_path):
    results = [_result('det', 'plain', 'pretrained', s, v) for s, v in enumerate((0.50, 0.54, 0.52))]
    results += [_result('det', 'FDConv-ResNet', 'pretrained', s, v) for s, v in enumerate((0.60, 0.62, 0.58))]
    results += [_result('det', 'plain', 'scratch', 0, 0.30), _result('seg', 'plain', 'scratch', 0, 70.25)]
    table = markdown_table(results)
    assert '| plain | 52.0 ± 2.0 [n=3] | 30.0 [n=1] | 10 |' in table
    assert '| FDConv-ResNet | 60.0 ± 2.0 (+8.0) [n=3] | — | 10 |' in table
    assert 'semantic FPN' in table and '| plain | 70.2 [n=1] | 10 |' in table
    assert bar_plot(results, str(tmp_path / 'p.png')) == 2
    assert (tmp_path / 'p.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_bad_arguments(tmp_path):
    for args, message in ((['--tasks', 'cls'], '--tasks must be a comma-separated subset of det,seg'),
                          (['--inits', 'imagenet'], '--inits must be a comma-separated subset'),
                          (['--det-seeds', '0,0'], 'expected distinct comma-separated seeds'),
                          (['--jobs', '0'], '--jobs and --threads must be >= 1')):
        proc = run_tool('tools/compare_layers.py', '--out', str(tmp_path), *args, check=False)
        assert proc.returncode == 2 and message in proc.stdout, proc.stdout


@pytest.mark.slow
def test_quick_comparison_end_to_end_and_resume(tmp_path):
    out = tmp_path / 'cmp'
    args = ('tools/compare_layers.py', '--out', str(out), '--quick', '--tasks', 'det', '--variants', 'FDConv-ResNet')
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
    second = run_tool(*args).stdout  # resumable: nothing reruns
    assert '[compare] start' not in second and '4 runs' in second
