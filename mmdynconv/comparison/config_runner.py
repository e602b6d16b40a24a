"""The comparison on a user's config (``tools/compare_layers.py --config``): one config per variant, derived by the
variant's one-change transform (:mod:`mmdynconv.models.variants`), every variant trained with each seed by
``tools/train.py`` (or under ``torch.distributed.run`` with ``--launcher pytorch``), everything else identical.

Held equal between the plain model and every variant: the whole config except the transformed part (data, pipeline,
schedule, optimiser, ``load_from`` / ``init_cfg``, evaluator), the seed (``randomness.seed`` and the train sampler's
seed, so the data order is the same), the launcher and the number of processes. Per run folder
``<out>/<variant>/seed<k>/``: ``config.py`` (the full config, dumped), ``train.log``, ``metrics.json`` (the last
validation) and ``result.json`` (written when the run finished). A finished run is skipped; an interrupted one is
resumed from its last checkpoint (mmengine ``resume``); a ``result.json`` made from another config is an error.
"""
import hashlib
import json
import os
import os.path as osp
import queue
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from .cells import ROOT

TRAIN_TOOL = osp.join(ROOT, 'tools', 'train.py')
DEFAULT_METRICS = dict(mmdet='coco/bbox_mAP', mmseg='mIoU')
PLAIN = 'plain'


class ConfigRefused(ValueError):
    """The config (or a variant named in ``--variants``) cannot be compared; raised before anything runs."""


def load_user_config(path, cfg_options=None):
    """The config as ``tools/train.py`` reads it (``--cfg-options`` merged, ``mmdynconv::`` bases resolved)."""
    from mmengine.config import Config

    from ..utils.config_scope import replace_package_scope
    if path.startswith(('mmdet::', 'mmseg::')):  # a packaged config, e.g. mmdet::retinanet/retinanet_r18_fpn_1x_coco.py
        cfg = Config.fromstring(f'_base_ = {path!r}\n', '.py')
    elif not osp.isfile(path):
        raise ConfigRefused(f'--config: {path!r} is neither a file nor an mmdet:: / mmseg:: config')
    else:
        cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    replace_package_scope(cfg)
    return cfg


def task_scope(cfg):
    scope = cfg.get('default_scope')
    if scope not in DEFAULT_METRICS:
        raise ConfigRefused(f"--config: default_scope must be 'mmdet' or 'mmseg' (an mmdet or mmseg config), got "
                            f'{scope!r}')
    for key in ('model', 'train_dataloader', 'train_cfg', 'val_dataloader', 'val_evaluator', 'val_cfg'):
        if not cfg.get(key):
            raise ConfigRefused(f'--config: needs {key} (the comparison trains, then reads the last validation\'s '
                                f'metrics), but the config has {key}={cfg.get(key)!r}')
    return scope


def plan_variants(cfg, names=None):
    """({'plain': model cfg, variant: model cfg, ...}, {variant: refusal message}).

    ``names=None``: every declared variant that applies (the others are returned as refused); named variants that
    do not apply raise :class:`ConfigRefused` with every refusal, before anything runs."""
    from ..models.variants import applicable_variants
    scope = task_scope(cfg)
    names = None if names is None else [n for n in names if n != PLAIN]
    try:
        done, refused = applicable_variants(cfg.model, scope, names)
    except ValueError as e:  # unknown names
        raise ConfigRefused(f'--variants: {e}') from None
    if names is not None and refused:
        raise ConfigRefused('--variants: ' + '; '.join(refused.values()))
    if not done:
        raise ConfigRefused('--config: no variant applies to this config: ' + '; '.join(refused.values()))
    from ..models.variants import _plain
    return {PLAIN: _plain(cfg.model), **done}, refused


def run_config(cfg, model_cfg, seed, work):
    """The run's full config (relative data paths resolve against the current directory, where every run starts):
    ``cfg`` with ``model_cfg``, the seed, the work dir and the metrics hook."""
    import copy

    from mmengine.config import Config
    run = Config(copy.deepcopy(cfg._cfg_dict.to_dict()), filename=cfg.filename)
    run.model = model_cfg
    run.work_dir = work
    run.randomness = dict(run.get('randomness') or {}, seed=seed)
    sampler = run.train_dataloader.get('sampler')
    if isinstance(sampler, dict) and sampler.get('type') in ('DefaultSampler', 'InfiniteSampler'):
        sampler['seed'] = seed  # the same data order for every variant of a seed
    imports = dict(run.get('custom_imports') or dict(imports=[], allow_failed_imports=False))
    modules = list(imports.get('imports') or [])
    modules += [m for m in ('mmdynconv', 'mmdynconv.comparison.metrics_hook') if m not in modules]
    run.custom_imports = dict(imports, imports=modules)
    hooks = [h for h in (run.get('custom_hooks') or []) if h.get('type') != 'DumpMetricsHook']
    run.custom_hooks = hooks + [dict(type='DumpMetricsHook', out_file=osp.join(work, 'metrics.json'))]
    return run


def run_key(variant, seed):
    return f'{variant}/seed{seed}'


def write_run_config(cfg, model_cfg, seed, out, variant):
    """Write ``<out>/<variant>/seed<k>/config.py``; return (path, sha256 of its text)."""
    work = osp.join(out, run_key(variant, seed))
    os.makedirs(work, exist_ok=True)
    text = run_config(cfg, model_cfg, seed, work).pretty_text
    path = osp.join(work, 'config.py')
    with open(path, 'w') as f:
        f.write(text)
    return path, hashlib.sha256(text.encode()).hexdigest()[:16]


def train_command(cfg_path, work, launcher='none', gpus=1, nnodes=1, node_rank=0, master_addr='127.0.0.1',
                  master_port=29500, python=sys.executable):
    """``tools/train.py`` (``--launcher pytorch``: under ``torch.distributed.run``, as tools/dist_train.sh), with
    ``--resume`` when the work dir holds a checkpoint of an interrupted run."""
    args = [cfg_path, '--work-dir', work]
    if osp.isfile(osp.join(work, 'last_checkpoint')):
        args.append('--resume')
    if launcher == 'none':
        return [python, TRAIN_TOOL] + args
    return [python, '-m', 'torch.distributed.run', f'--nnodes={nnodes}', f'--node_rank={node_rank}',
            f'--master_addr={master_addr}', f'--master_port={master_port}', f'--nproc_per_node={gpus}',
            TRAIN_TOOL] + args + ['--launcher', 'pytorch']


def run_one(cfg, model_cfg, variant, seed, out, metric, env, launch, log=print):
    """Run (or resume, or skip when finished) one (variant, seed); return its result dict, None when it failed."""
    work = osp.join(out, run_key(variant, seed))
    result_file = osp.join(work, 'result.json')
    cfg_path, sha = write_run_config(cfg, model_cfg, seed, out, variant)
    if osp.isfile(result_file):
        with open(result_file) as f:
            result = json.load(f)
        if result.get('config_sha') != sha:
            raise RuntimeError(f'{result_file} was made from another config (config sha {result.get("config_sha")}, '
                               f'now {sha}): use another --out or remove {work}')
        return result
    if osp.exists(osp.join(work, 'FAILED')):
        os.remove(osp.join(work, 'FAILED'))
    cmd = train_command(cfg_path, work, **launch)
    log(f'[compare] {"resume" if "--resume" in cmd else "start"} {variant} seed {seed}')
    start = time.time()
    with open(osp.join(work, 'train.log'), 'a') as f:
        rc = subprocess.call(cmd, cwd=os.getcwd(), env=env, stdout=f, stderr=subprocess.STDOUT)
    wall = time.time() - start
    metrics_file = osp.join(work, 'metrics.json')
    if rc != 0 or not osp.isfile(metrics_file):
        with open(osp.join(work, 'FAILED'), 'w') as f:
            f.write(f'return code {rc}; see train.log\n')
        log(f'[compare] FAILED {variant} seed {seed} (rc {rc}, {wall:.0f} s): {osp.join(work, "train.log")}')
        return None
    if launch.get('node_rank', 0) != 0:  # multi-node: node 0 records the result
        return None
    with open(metrics_file) as f:
        metrics = json.load(f)
    if not set(metrics) - {'iter'}:
        with open(osp.join(work, 'FAILED'), 'w') as f:
            f.write('the evaluator reported no metrics (mmdet\'s CocoMetric reports none when the model detected '
                    'nothing, e.g. after very few iterations); see train.log\n')
        log(f'[compare] FAILED {variant} seed {seed}: the evaluator reported no metrics ({work}/FAILED)')
        return None
    if metric not in metrics:
        raise RuntimeError(f'--metric: {metric!r} is not among the metrics the evaluator reported '
                           f'({", ".join(k for k in metrics if k != "iter")}); pass one of those')
    result = dict(variant=variant, seed=seed, metric=metric, value=metrics[metric], metrics=metrics,
                  wall_s=round(wall, 1), config_sha=sha)
    with open(result_file + '.tmp', 'w') as f:
        json.dump(result, f, indent=1)
    os.replace(result_file + '.tmp', result_file)
    log(f'[compare] done {variant} seed {seed}: {metric} = {metrics[metric]:.4f} ({wall:.0f} s)')
    return result


def device_slots(jobs, gpus, cuda_devices):
    """CUDA_VISIBLE_DEVICES for each of ``jobs`` parallel runs of ``gpus`` processes (None entries on CPU)."""
    if not cuda_devices:
        return [None] * jobs
    if jobs * gpus > cuda_devices:
        raise ValueError(f'--jobs {jobs} x --gpus {gpus} needs {jobs * gpus} GPUs, this machine has {cuda_devices}')
    return [','.join(str(d) for d in range(i * gpus, (i + 1) * gpus)) for i in range(jobs)]


def run_all(cfg, models, seeds, out, metric, jobs=1, threads=1, launch=None, log=print):
    """Every (variant, seed), seed by seed (so an interrupted comparison has whole seeds); returns the results."""
    import torch
    launch = dict(launch or {})
    gpus = launch.get('gpus', 1)
    slots = queue.Queue()
    base_port = launch.get('master_port', 29500)
    for i, devices in enumerate(device_slots(jobs, gpus if launch.get('launcher', 'none') != 'none' else 1,
                                             torch.cuda.device_count())):
        slots.put((i, devices))
    base_env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    base_env['PYTHONPATH'] = os.pathsep.join(filter(None, [ROOT, base_env.get('PYTHONPATH')]))

    def run(item):
        variant, seed = item
        slot, devices = slots.get()
        try:
            env = dict(base_env)
            if devices is not None:
                env['CUDA_VISIBLE_DEVICES'] = devices
            return run_one(cfg, models[variant], variant, seed, out, metric, env,
                           dict(launch, master_port=base_port + slot), log)
        finally:
            slots.put((slot, devices))

    items = [(v, s) for s in seeds for v in models]
    with ThreadPoolExecutor(jobs) as pool:
        return [r for r in pool.map(run, items) if r is not None]


def collect(out, variants, seeds):
    """The finished results under ``out`` of these variants and seeds."""
    results = []
    for v in variants:
        for s in seeds:
            path = osp.join(out, run_key(v, s), 'result.json')
            if osp.isfile(path):
                with open(path) as f:
                    results.append(json.load(f))
    return results
