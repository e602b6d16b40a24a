"""The comparison on a user's config (``tools/compare_layers.py --config``, :func:`compare_config`): one config per
variant, derived by the variant's one-change transform (:mod:`mmdynconv.models.variants`) or taken from another
config file (a *file variant*: that file's ``model``), every variant trained with each seed by ``tools/train.py`` (or
under ``torch.distributed.run`` with ``--launcher pytorch``), everything else identical.

Held equal between the plain model and every variant: the whole config except the transformed part (data, pipeline,
schedule, optimiser, ``load_from`` / ``init_cfg``, evaluator), the seed (``randomness.seed`` and the train sampler's
seed, so the data order is the same), the launcher and the number of processes. Per run folder
``<out>/<variant>/seed<k>/``: ``config.py`` (the full config, dumped), ``train.log``, ``metrics.json`` (the last
validation) and ``result.json`` (written when the run finished). A finished run is skipped; an interrupted one is
resumed from its last checkpoint (mmengine ``resume``); a ``result.json`` made from another config is an error.

:func:`run_queue` runs any list of :class:`Run` (each with its own config and metric) the same way; the demo preset
of ``tools/compare_layers.py`` (``experiments/``) trains through it.
"""
import copy
import hashlib
import json
import os
import os.path as osp
import queue
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

__all__ = ['ROOT', 'ConfigRefused', 'NothingToReport', 'load_user_config', 'task_scope', 'file_variant_model',
           'plan_variants', 'run_config', 'run_key', 'write_run_config', 'train_command', 'run_one', 'device_slots',
           'Run', 'run_queue', 'with_hooks', 'run_all', 'collect', 'compare_config']

PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
ROOT = osp.dirname(PACKAGE_DIR)  # the repository root in a clone (or an editable install)
# tools/train.py of the clone; in an installed wheel the copy setup.py puts into mmdynconv/.mim
TRAIN_TOOL = next((p for p in (osp.join(ROOT, 'tools', 'train.py'), osp.join(PACKAGE_DIR, '.mim', 'tools', 'train.py'))
                   if osp.isfile(p)), osp.join(ROOT, 'tools', 'train.py'))
DEFAULT_METRICS = dict(mmdet='coco/bbox_mAP', mmseg='mIoU')
PLAIN = 'plain'


class ConfigRefused(ValueError):
    """The config (or a variant named in ``--variants``) cannot be compared; raised before anything runs."""


class NothingToReport(RuntimeError):
    """No cost measurement or no finished run under the output folder (``--report`` before any run)."""


def load_user_config(path, cfg_options=None, option='--config'):
    """The config as ``tools/train.py`` reads it (``cfg_options`` merged, ``mmdynconv::`` bases resolved);
    ``option`` names the argument ``path`` came from in the error."""
    from mmengine.config import Config

    from ..utils.config_scope import replace_package_scope
    if path.startswith(('mmdet::', 'mmseg::')):  # a packaged config, e.g. mmdet::retinanet/retinanet_r18_fpn_1x_coco.py
        cfg = Config.fromstring(f'_base_ = {path!r}\n', '.py')
    elif not osp.isfile(path):
        raise ConfigRefused(f'{option}: {path!r} is neither a file nor an mmdet:: / mmseg:: config')
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


def _as_dict(cfg):
    """A ConfigDict / dict tree as plain dicts and lists."""
    if isinstance(cfg, dict):
        return {k: _as_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(_as_dict(v) for v in cfg)
    return cfg


def file_variant_model(name, path, scope, cfg_options=None):
    """The model config of the file variant ``name``: the ``model`` of the config ``path`` (with the same
    ``cfg_options`` merged as into the compared config), whose ``default_scope`` must be ``scope``."""
    other = load_user_config(path, cfg_options, option=f'--variant-config {name}')
    if other.get('default_scope') != scope or not other.get('model'):
        raise ConfigRefused(f'--variant-config {name}: {path!r} must have default_scope {scope!r} (the --config\'s) '
                            f'and a model, got default_scope {other.get("default_scope")!r}')
    return _as_dict(other.model)


def plan_variants(cfg, names=None, files=None, cfg_options=None):
    """({'plain': model cfg, variant: model cfg, ...}, {variant: refusal message}).

    ``files``: {name: config path} of the file variants (see :func:`file_variant_model`; ``cfg_options`` is merged
    into each). ``names=None``: every declared variant that applies (the others are returned as refused), then every
    file variant; ``names`` picks declared and file variants by name; named declared variants that do not apply
    raise :class:`ConfigRefused` with every refusal, before anything runs."""
    from ..models.variants import CONFIG_VARIANTS, applicable_variants
    scope = task_scope(cfg)
    files = dict(files or {})
    clash = [n for n in files if n == PLAIN or n in CONFIG_VARIANTS]
    if clash:
        raise ConfigRefused(f'--variant-config: names must differ from {PLAIN!r} and the declared variants '
                            f'({", ".join(CONFIG_VARIANTS)}), got {", ".join(clash)}')
    declared = None if names is None else [n for n in names if n != PLAIN and n not in files]
    try:
        done, refused = applicable_variants(cfg.model, scope, declared)
    except ValueError as e:  # unknown names
        raise ConfigRefused(f'--variants: {e}') from None
    if declared is not None and refused:
        raise ConfigRefused('--variants: ' + '; '.join(refused.values()))
    for name, path in files.items():
        if names is None or name in names:
            done[name] = file_variant_model(name, path, scope, cfg_options)
    if not done:
        raise ConfigRefused('--config: no variant applies to this config: ' + '; '.join(refused.values()))
    return {PLAIN: _as_dict(cfg.model), **done}, refused


def run_config(cfg, model_cfg, seed, work):
    """The run's full config (relative data paths resolve against the current directory, where every run starts):
    ``cfg`` with ``model_cfg``, the seed, the work dir and the metrics hook."""
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


class Run(NamedTuple):
    """One training run of :func:`run_queue`: ``variant`` (its folder under the output root, less ``seed<k>``; may
    hold ``/``), ``seed``, ``cfg`` (the config it is made from), ``model`` (the model config that replaces
    ``cfg.model``) and ``metric`` (the primary metric of its result)."""
    variant: str
    seed: int
    cfg: object
    model: dict
    metric: str


def run_queue(runs, out, jobs=1, threads=1, launch=None, log=print):
    """Run (or resume, or skip when finished) every :class:`Run` with :func:`run_one`, ``jobs`` at a time, started
    in the order given, each with ``threads`` OpenMP threads; returns their results (None where a run failed)."""
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
        slot, devices = slots.get()
        try:
            env = dict(base_env)
            if devices is not None:
                env['CUDA_VISIBLE_DEVICES'] = devices
            return run_one(item.cfg, item.model, item.variant, item.seed, out, item.metric, env,
                           dict(launch, master_port=base_port + slot), log)
        finally:
            slots.put((slot, devices))

    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(run, runs))


def with_hooks(cfg, hooks):
    """``cfg`` with ``hooks`` (hook configs a variant's layer needs, e.g. its temperature schedule) added to its
    ``custom_hooks``, except a type the config already has (the user's settings win); ``cfg`` itself when none."""
    if not hooks:
        return cfg
    from mmengine.config import Config
    new = Config(copy.deepcopy(cfg._cfg_dict.to_dict()), filename=cfg.filename)
    present = {h.get('type') for h in (new.get('custom_hooks') or [])}
    new.custom_hooks = list(new.get('custom_hooks') or []) + [dict(h) for h in hooks if h['type'] not in present]
    return new


def run_all(cfg, models, seeds, out, metric, jobs=1, threads=1, launch=None, log=print, hooks=None):
    """Every (variant, seed) of ``cfg`` with ``models`` ({variant: model cfg}) and the variants' ``hooks``
    ({variant: hook configs}, :func:`with_hooks`), seed by seed (so an interrupted comparison has whole seeds);
    returns the results of the runs that finished."""
    cfgs = {v: with_hooks(cfg, (hooks or {}).get(v)) for v in models}
    runs = [Run(v, s, cfgs[v], models[v], metric) for s in seeds for v in models]
    return [r for r in run_queue(runs, out, jobs, threads, launch, log) if r is not None]


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


def compare_config(config, out, variants=None, variant_configs=None, seeds=(0,), cfg_options=None, metric=None,
                   jobs=1, threads=1, launch=None, cost_iters=10, dry_run=False, report_only=False, log=print):
    """The comparison on ``config`` (a file or an ``mmdet::`` / ``mmseg::`` config): plan the variants
    (:func:`plan_variants`: ``variants`` names, ``variant_configs`` {name: config path}), measure every model's cost
    in this process (node 0; skipped with ``report_only``), run or resume every (variant, seed) (:func:`run_all`;
    ``launch``: :func:`train_command`'s launcher arguments), then write ``results.csv``, ``table.md``, ``cost.png``
    and (with the costs) ``cost.json`` into ``out``. ``dry_run`` only logs the runs, done or to do.

    Returns dict(results, costs, table, missing: runs without a result), or None for a dry run and on nodes other
    than 0. Raises :class:`ConfigRefused` before anything runs, :class:`NothingToReport` when ``out`` holds no cost
    measurement or no finished run."""
    from ..models.variants import CONFIG_VARIANTS
    from . import config_report as report
    launch = dict(launch or {})
    cfg = load_user_config(config, cfg_options)
    scope = task_scope(cfg)
    models, refused = plan_variants(cfg, variants, variant_configs, cfg_options)
    for msg in refused.values():
        log(f'[compare] skipped: {msg}')
    metric = metric or DEFAULT_METRICS[scope]
    out = osp.abspath(out)
    if dry_run:
        for s in seeds:
            for v in models:
                done = osp.isfile(osp.join(out, run_key(v, s), 'result.json'))
                log(('done  ' if done else 'to do ') + run_key(v, s))
        return None
    os.makedirs(out, exist_ok=True)
    cost_file = osp.join(out, 'cost.json')
    start = time.time()
    node_rank = launch.get('node_rank', 0)
    if not report_only:
        if node_rank == 0:
            import torch
            torch.set_num_threads(threads)
            from .cost import measure_costs
            costs = measure_costs(cfg, models, cost_iters, log)
            with open(cost_file, 'w') as f:
                json.dump(costs, f, indent=1)
        hooks = {n: CONFIG_VARIANTS[n].hooks for n in models if n in CONFIG_VARIANTS}
        run_all(cfg, models, seeds, out, metric, jobs, threads, launch, log, hooks)
        if node_rank != 0:
            return None
    if not osp.isfile(cost_file):
        raise NothingToReport(f'no cost measurement under {out} (run without --report first)')
    with open(cost_file) as f:
        costs = json.load(f)
    results = collect(out, list(models), seeds)
    if not results:
        raise NothingToReport(f'no finished runs under {out}')
    report.write_csv(results, costs, osp.join(out, 'results.csv'))
    layers = {n: CONFIG_VARIANTS[n].layer for n in models if n in CONFIG_VARIANTS}
    layers.update({n: f'model of {p}' for n, p in (variant_configs or {}).items() if n in models})
    layers[PLAIN] = 'the config as given'
    table = report.markdown_table(results, costs, metric, list(models), layers, refused)
    with open(osp.join(out, 'table.md'), 'w') as f:
        f.write(table)
    report.cost_plot(results, costs, metric, osp.join(out, 'cost.png'))
    log(table)
    log(f'[compare] {len(results)} runs; this invocation took {time.time() - start:.0f} s; '
        f'wrote {osp.join(out, "results.csv")}, table.md, cost.png')
    return dict(results=results, costs=costs, table=table, missing=len(models) * len(seeds) - len(results))
