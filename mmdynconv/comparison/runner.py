"""Resumable execution of a comparison: data generation, pretraining, fine-tuning cells, each a ``tools/train.py``
subprocess in its own folder. A job whose ``result.json`` exists is skipped, so an interrupted comparison continues
where it stopped; a failed job leaves ``FAILED`` (with the return code) and is retried on the next run."""
import json
import os
import os.path as osp
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from ..utils.demo_data import generate
from .cells import INITS, ROOT, finetune_jobs, pretrain_jobs, variants

METRICS = dict(det='coco/bbox_mAP', seg='mIoU')
TRAIN_TOOL = osp.join(ROOT, 'tools', 'train.py')


def prepare_data(spec, folder, log=print):
    """Generate ``spec`` into ``folder`` once; a folder made from another spec is an error, not silently reused."""
    marker = osp.join(folder, 'spec.json')
    wanted = json.dumps(asdict(spec), sort_keys=True, default=list)
    if osp.isfile(marker):
        with open(marker) as f:
            if f.read() != wanted:
                raise RuntimeError(f'{folder} holds data generated from another spec ({marker}); remove the folder '
                                   f'or choose another --out')
        return
    generate(folder, spec, log=log)
    with open(marker, 'w') as f:
        f.write(wanted)


def _data_entries(task, root):
    if task == 'det':
        data_root = osp.join(root, 'coco') + '/'
        return dict(
            train_dataloader=dict(dataset=dict(data_root=data_root)),
            val_dataloader=dict(dataset=dict(data_root=data_root)),
            test_dataloader=dict(dataset=dict(data_root=data_root)),
            val_evaluator=dict(ann_file=data_root + 'annotations/instances_val2017.json'),
            test_evaluator=dict(ann_file=data_root + 'annotations/instances_val2017.json'))
    data_root = osp.join(root, 'ade20k')
    return dict(train_dataloader=dict(dataset=dict(data_root=data_root)),
                val_dataloader=dict(dataset=dict(data_root=data_root)),
                test_dataloader=dict(dataset=dict(data_root=data_root)))


def backbone_file(out, kind):
    return osp.join(out, 'pretrained', f'{kind}_backbone.pth')


def _base_hooks(config):
    """The ``custom_hooks`` of a config (a list in a child config replaces its base's, so they are carried over)."""
    from mmengine.config import Config
    return [dict(h) for h in Config.fromfile(config).get('custom_hooks', [])]


def job_config(job, protocol, out):
    """The entries the job's config file adds to its ``configs/compare`` base (a dict of config variables)."""
    schedule = protocol.pretrain if job.kind == 'pretrain' else getattr(protocol, job.task)
    data = osp.join(out, 'data', 'pretrain' if job.kind == 'pretrain' else 'eval')
    work = osp.join(out, job.key)
    entries = dict(
        custom_imports=dict(imports=['mmdynconv', 'mmdet.models', 'mmdynconv.comparison.metrics_hook'],
                            allow_failed_imports=False),
        work_dir=work,
        randomness=dict(seed=job.seed),
        default_hooks=dict(logger=dict(interval=max(1, min(25, schedule.iters // 4))),
                           checkpoint=dict(by_epoch=False, interval=-1, save_last=job.kind == 'pretrain',
                                           max_keep_ckpts=1)),
        log_processor=dict(by_epoch=False, window_size=max(1, min(25, schedule.iters // 4))),
        custom_hooks=_base_hooks(job.config) + [dict(type='DumpMetricsHook', out_file=osp.join(work, 'metrics.json'))],
        **schedule.config(),
        **_data_entries(job.task, data))
    for key in ('train_dataloader',):
        entries[key]['batch_size'] = schedule.batch_size
    if job.kind == 'finetune' and job.init == 'pretrained':
        entries['model'] = dict(backbone=dict(
            init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=backbone_file(out, job.pretrain)),
            frozen_stages=protocol.frozen_stages, norm_eval=True))
    return entries


def write_job_config(job, protocol, out):
    """Write ``<out>/<job.key>/config.py`` (``_base_`` = the job's config) and return its path."""
    work = osp.join(out, job.key)
    os.makedirs(work, exist_ok=True)
    lines = [f'# written by mmdynconv.comparison for job {job.key!r}', f'_base_ = {job.config!r}']
    lines += [f'{k} = {v!r}' for k, v in job_config(job, protocol, out).items()]
    path = osp.join(work, 'config.py')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path


def extract_backbone(checkpoint, dst):
    """Save the ``backbone.*`` weights of a Runner checkpoint as a plain backbone checkpoint."""
    import torch

    from ..utils import allow_runner_checkpoints
    allow_runner_checkpoints()
    state = torch.load(checkpoint, map_location='cpu')['state_dict']
    backbone = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    if not backbone:
        raise RuntimeError(f'{checkpoint} has no backbone.* weights')
    os.makedirs(osp.dirname(dst), exist_ok=True)
    torch.save(dict(state_dict=backbone), dst + '.tmp')
    os.replace(dst + '.tmp', dst)


def run_job(job, protocol, out, python=sys.executable, env=None, log=print):
    """Run one job unless its ``result.json`` exists; return the result dict (None when it failed)."""
    work = osp.join(out, job.key)
    result_file = osp.join(work, 'result.json')
    schedule = protocol.pretrain if job.kind == 'pretrain' else getattr(protocol, job.task)
    if osp.isfile(result_file):
        with open(result_file) as f:
            result = json.load(f)
        if result.get('schedule') != asdict(schedule):
            raise RuntimeError(f'{result_file} was made with schedule {result.get("schedule")}, this protocol has '
                               f'{asdict(schedule)}: use another --out or remove the folder')
        return result
    cfg = write_job_config(job, protocol, out)
    for stale in ('metrics.json', 'FAILED'):
        if osp.exists(osp.join(work, stale)):
            os.remove(osp.join(work, stale))
    log(f'[compare] start {job.key}')
    start = time.time()
    with open(osp.join(work, 'train.log'), 'w') as f:
        rc = subprocess.call([python, TRAIN_TOOL, cfg, '--work-dir', work], cwd=ROOT, env=env, stdout=f,
                             stderr=subprocess.STDOUT)
    wall = time.time() - start
    metrics_file = osp.join(work, 'metrics.json')
    if rc != 0 or not osp.isfile(metrics_file):
        with open(osp.join(work, 'FAILED'), 'w') as f:
            f.write(f'return code {rc}; see train.log\n')
        log(f'[compare] FAILED {job.key} (rc {rc}, {wall:.0f} s): {osp.join(work, "train.log")}')
        return None
    with open(metrics_file) as f:
        metrics = json.load(f)
    if job.kind == 'pretrain':
        extract_backbone(osp.join(work, f'iter_{protocol.pretrain.iters}.pth'), backbone_file(out, job.pretrain))
    metric = METRICS[job.task]
    result = dict(asdict(job), key=job.key, metric=metric, value=metrics[metric], wall_s=round(wall, 1),
                  protocol=protocol.name, schedule=asdict(schedule))
    with open(result_file + '.tmp', 'w') as f:
        json.dump(result, f, indent=1)
    os.replace(result_file + '.tmp', result_file)
    log(f'[compare] done {job.key}: {metric} = {metrics[metric]:.4f} ({wall:.0f} s)')
    return result


def run_comparison(protocol, out, variant_names=None, inits=INITS, jobs=1, threads=1, python=sys.executable,
                   log=print, dry_run=False):
    """Run (or resume) the whole comparison under ``out``; return the results of the finished fine-tuning cells.

    ``jobs``: runs at a time; ``threads``: ``OMP_NUM_THREADS`` of each run; ``dry_run``: only list the jobs.
    """
    out = osp.abspath(out)
    bad = set(inits) - set(INITS)
    if bad or not inits:
        raise ValueError(f'inits must be a non-empty subset of {INITS}, got {inits!r}')
    if jobs < 1 or threads < 1:
        raise ValueError(f'jobs and threads must be >= 1, got jobs={jobs}, threads={threads}')
    chosen = variants(protocol.tasks, variant_names)
    fine = finetune_jobs(chosen, protocol, inits)
    pre = pretrain_jobs(chosen) if 'pretrained' in inits else []
    if dry_run:
        for job in pre + fine:
            log(('done  ' if osp.isfile(osp.join(out, job.key, 'result.json')) else 'to do ') + job.key)
        return []
    prepare_data(protocol.eval_data, osp.join(out, 'data', 'eval'), log)
    if pre:
        prepare_data(protocol.pretrain_data, osp.join(out, 'data', 'pretrain'), log)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [ROOT, env.get('PYTHONPATH')]))

    def run(job):
        return run_job(job, protocol, out, python, env, log)

    with ThreadPoolExecutor(jobs) as pool:
        done_pre = {job.pretrain: r for job, r in zip(pre, pool.map(run, pre))}
        runnable = [j for j in fine if j.init == 'scratch' or done_pre.get(j.pretrain) is not None]
        for j in fine:
            if j not in runnable:
                log(f'[compare] skipped {j.key}: pretraining {j.pretrain!r} failed')
        results = [r for r in pool.map(run, runnable) if r is not None]
    return results


def max_logged(train_log, key='grad_norm'):
    """The largest ``key: value`` the Runner logged in ``train_log`` (None when it logged none)."""
    import re
    if not osp.isfile(train_log):
        return None
    with open(train_log, errors='replace') as f:
        values = [float(v) for v in re.findall(rf'\b{key}: ([0-9.eE+-]+)', f.read())]
    return max(values) if values else None


def collect_results(out):
    """The ``result.json`` of every finished fine-tuning run under ``out``, each with ``max_grad_norm`` (the largest
    gradient norm its log shows, before clipping) added."""
    import glob
    results = []
    for path in sorted(glob.glob(osp.join(out, '*', '*', '*', 'seed*', 'result.json'))):
        with open(path) as f:
            r = json.load(f)
        if r.get('kind') == 'finetune':
            r['max_grad_norm'] = max_logged(osp.join(osp.dirname(path), 'train.log'))
            results.append(r)
    return results
