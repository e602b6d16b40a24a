"""The demo preset's runs, trained through the config runner (:mod:`mmdynconv.comparison.config_runner`: per-run
``config.py``, ``result.json`` checked against the config's sha, resume from the last checkpoint, ``FAILED``
markers). Each run's config is its file under ``configs/compare`` with the protocol's entries (data roots, schedule,
logging) and its initialisation (the pretrained backbone, or from scratch) merged as cfg options. Data generation,
the pretraining runs (whose backbones are then extracted) and the fine-tuning cells run in that order."""
import json
import os
import os.path as osp
import re
import time
from dataclasses import asdict

from mmdynconv.comparison.config_runner import NothingToReport, Run, collect, load_user_config, run_queue
from mmdynconv.utils.demo_data import generate

from .cells import INITS, finetune_jobs, pretrain_jobs, variants

METRICS = dict(det='coco/bbox_mAP', seg='mIoU')
IMPORTS = ['mmdynconv', 'mmdet.models', 'mmdynconv.comparison.metrics_hook']


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


def job_options(job, protocol, out):
    """The cfg options merged into the job's config file: data roots, schedule, logging, checkpoints and, when
    fine-tuned from pretrained, the backbone's init (seed, work dir and metrics hook: the config runner's)."""
    schedule = protocol.pretrain if job.kind == 'pretrain' else getattr(protocol, job.task)
    data = osp.join(out, 'data', 'pretrain' if job.kind == 'pretrain' else 'eval')
    window = max(1, min(25, schedule.iters // 4))
    options = dict(
        custom_imports=dict(imports=IMPORTS, allow_failed_imports=False),
        default_hooks=dict(logger=dict(interval=window),
                           checkpoint=dict(by_epoch=False, interval=-1, save_last=job.kind == 'pretrain',
                                           max_keep_ckpts=1)),
        log_processor=dict(by_epoch=False, window_size=window),
        **schedule.config(),
        **_data_entries(job.task, data))
    options['train_dataloader']['batch_size'] = schedule.batch_size
    if job.kind == 'finetune' and job.init == 'pretrained':
        options['model'] = dict(backbone=dict(
            init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=backbone_file(out, job.pretrain)),
            frozen_stages=protocol.frozen_stages, norm_eval=True))
    return options


def job_run(job, protocol, out):
    """The job as a config-runner :class:`Run`."""
    cfg = load_user_config(job.config, job_options(job, protocol, out))
    return Run(job.folder, job.seed, cfg, cfg.model.to_dict(), METRICS[job.task])


def extract_backbone(checkpoint, dst):
    """Save the ``backbone.*`` weights of a Runner checkpoint as a plain backbone checkpoint."""
    import torch

    from mmdynconv.utils import allow_runner_checkpoints
    allow_runner_checkpoints()
    state = torch.load(checkpoint, map_location='cpu')['state_dict']
    backbone = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    if not backbone:
        raise RuntimeError(f'{checkpoint} has no backbone.* weights')
    os.makedirs(osp.dirname(dst), exist_ok=True)
    torch.save(dict(state_dict=backbone), dst + '.tmp')
    os.replace(dst + '.tmp', dst)


def plan(protocol, variant_names=None, inits=INITS):
    """(pretraining jobs, fine-tuning jobs) of the chosen variants and initialisations."""
    bad = set(inits) - set(INITS)
    if bad or not inits:
        raise ValueError(f'inits must be a non-empty subset of {INITS}, got {inits!r}')
    chosen = variants(protocol.tasks, variant_names)
    pre = pretrain_jobs(chosen) if 'pretrained' in inits else []
    return pre, finetune_jobs(chosen, protocol, inits)


def run_comparison(protocol, out, variant_names=None, inits=INITS, jobs=1, threads=1, log=print, dry_run=False):
    """Run (or resume) the whole comparison under ``out``; return the results of the finished fine-tuning cells.

    ``jobs``: runs at a time; ``threads``: ``OMP_NUM_THREADS`` of each run; ``dry_run``: only list the jobs.
    """
    out = osp.abspath(out)
    if jobs < 1 or threads < 1:
        raise ValueError(f'jobs and threads must be >= 1, got jobs={jobs}, threads={threads}')
    pre, fine = plan(protocol, variant_names, inits)
    if dry_run:
        for job in pre + fine:
            log(('done  ' if osp.isfile(osp.join(out, job.key, 'result.json')) else 'to do ') + job.key)
        return []
    prepare_data(protocol.eval_data, osp.join(out, 'data', 'eval'), log)
    if pre:
        prepare_data(protocol.pretrain_data, osp.join(out, 'data', 'pretrain'), log)
    pretrained = set()
    for job, result in zip(pre, run_queue([job_run(j, protocol, out) for j in pre], out, jobs, threads, log=log)):
        if result is None:
            continue
        checkpoint = osp.join(out, job.key, f'iter_{protocol.pretrain.iters}.pth')
        dst = backbone_file(out, job.pretrain)
        if not osp.isfile(dst) or osp.getmtime(dst) < osp.getmtime(checkpoint):
            extract_backbone(checkpoint, dst)
        pretrained.add(job.pretrain)
    runnable = [j for j in fine if j.init == 'scratch' or j.pretrain in pretrained]
    for j in fine:
        if j not in runnable:
            log(f'[compare] skipped {j.key}: pretraining {j.pretrain!r} failed')
    results = run_queue([job_run(j, protocol, out) for j in runnable], out, jobs, threads, log=log)
    return [r for r in results if r is not None]


def max_logged(train_log, key='grad_norm'):
    """The largest ``key: value`` the Runner logged in ``train_log`` (None when it logged none)."""
    if not osp.isfile(train_log):
        return None
    with open(train_log, errors='replace') as f:
        values = [float(v) for v in re.findall(rf'\b{key}: ([0-9.eE+-]+)', f.read())]
    return max(values) if values else None


def collect_results(out, protocol, variant_names=None, inits=INITS):
    """The finished fine-tuning cells (of these variants and initialisations) under ``out``, each result with its
    ``task``, ``variant``, ``init`` and ``max_grad_norm`` (the largest gradient norm its log shows, before
    clipping)."""
    out = osp.abspath(out)
    jobs = {j.folder: j for j in plan(protocol, variant_names, inits)[1]}
    results = []
    for task, seeds in (('det', protocol.det_seeds), ('seg', protocol.seg_seeds)):
        for r in collect(out, [f for f, j in jobs.items() if j.task == task], seeds):
            job = jobs[r['variant']]
            results.append(dict(r, task=job.task, variant=job.variant, init=job.init, max_grad_norm=max_logged(
                osp.join(out, job.folder, f'seed{r["seed"]}', 'train.log'))))
    return results


def run_demo(protocol, out, variant_names=None, inits=INITS, jobs=1, threads=1, dry_run=False, report_only=False,
             log=print):
    """The demo preset: run or resume (:func:`run_comparison`; ``report_only``: no runs), then write
    ``results.csv``, ``table.md`` and ``comparison.png`` of the finished cells into ``out``; returns their results
    (none for a dry run). Raises :class:`NothingToReport` when no chosen cell has finished."""
    from .plot import bar_plot
    from .report import markdown_table, write_csv
    start = time.time()
    if not report_only:
        run_comparison(protocol, out, variant_names, inits, jobs, threads, log, dry_run)
        if dry_run:
            return []
    results = collect_results(out, protocol, variant_names, inits)
    if not results:
        raise NothingToReport(f'no finished runs under {out}')
    write_csv(results, osp.join(out, 'results.csv'))
    table = markdown_table(results)
    with open(osp.join(out, 'table.md'), 'w') as f:
        f.write(table)
    bar_plot(results, osp.join(out, 'comparison.png'))
    log(table)
    log(f'[compare] {len(results)} runs; this invocation took {time.time() - start:.0f} s; '
        f'wrote {osp.join(out, "results.csv")}, table.md, comparison.png')
    return results
