"""Runner set-up shared by ``tools/train.py`` and ``tools/test.py``."""
import importlib
import os
import os.path as osp

import torch
import torch.distributed as dist

from ..ops.compat import add_safe_globals

__all__ = ['load_config', 'check_data_paths', 'enable_amp', 'setup_cpu_distributed', 'allow_runner_checkpoints']


def load_config(path, launcher='none', work_dir=None, cfg_options=None):
    """Read a config the way the tools do: ``--cfg-options`` merged, ``work_dir`` defaulting to
    ``./work_dirs/<config name>``, ``launcher`` set."""
    from mmengine.config import Config

    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg




def _datasets(cfg):
    """Yield (config key, dataset cfg) for every dataset in the train/val/test dataloaders, wrappers unpacked."""
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(split)
        if not loader or 'dataset' not in loader:
            continue
        stack = [(f'{split}.dataset', loader['dataset'])]
        while stack:
            key, ds = stack.pop()
            if 'dataset' in ds:
                stack.append((key + '.dataset', ds['dataset']))
            for i, sub in enumerate(ds.get('datasets', [])):
                stack.append((f'{key}.datasets[{i}]', sub))
            if 'dataset' not in ds and 'datasets' not in ds:
                yield key, ds


def _is_local(path):
    return isinstance(path, str) and '://' not in path


def check_data_paths(cfg):
    """Raise ``FileNotFoundError`` naming the first data path of ``cfg`` that does not exist locally.

    Checks ``data_root``, ``ann_file`` and ``data_prefix`` folders of every dataset, and ``ann_file`` of the
    evaluators. Remote paths (``s3://`` ...) and datasets read through ``backend_args`` are not checked. A config
    key ``data_hint`` (a string, e.g. how to generate the data) is appended to the message.
    """
    missing = []
    for key, ds in _datasets(cfg):
        if ds.get('backend_args'):
            continue
        root = ds.get('data_root') or ''
        if _is_local(root) and root and not osp.isdir(root):
            missing.append((f'{key}.data_root', root))
            continue
        if _is_local(ds.get('ann_file')) and ds.get('ann_file'):
            missing.append((f'{key}.ann_file', osp.join(root, ds['ann_file'])))
        for name, prefix in (ds.get('data_prefix') or {}).items():
            if _is_local(prefix) and prefix:
                missing.append((f'{key}.data_prefix.{name}', osp.join(root, prefix)))
    for split in ('val_evaluator', 'test_evaluator'):
        evaluators = cfg.get(split) or []
        for i, ev in enumerate(evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]):
            if isinstance(ev, dict) and _is_local(ev.get('ann_file')) and ev.get('ann_file'):
                missing.append((f'{split}[{i}].ann_file', ev['ann_file']))
    for key, path in missing:
        if not osp.exists(path):
            hint = f"\n{cfg['data_hint']}" if cfg.get('data_hint') else ''
            raise FileNotFoundError(f'{key}: data path {path!r} does not exist (cwd: {os.getcwd()}).{hint}')


def enable_amp(cfg):
    """Switch ``cfg.optim_wrapper`` to mmengine's ``AmpOptimWrapper`` (dynamic loss scale)."""
    if not torch.cuda.is_available():
        raise RuntimeError('--amp needs a CUDA device: mmengine\'s AmpOptimWrapper does not run on CPU. '
                           'Drop --amp to train in fp32 on CPU.')
    if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
        return
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')


def setup_cpu_distributed(cfg):
    """Make ``launcher='pytorch'`` work on machines without CUDA.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` and its DDP wrapper passes ``device_ids``, both of
    which fail without CUDA. Here the process group is initialised with the gloo backend from torchrun's
    environment, and DDP is built with ``device_ids=None``. Does nothing when CUDA is available.
    """
    if cfg.launcher == 'none' or torch.cuda.is_available():
        return
    if cfg.launcher != 'pytorch':
        raise RuntimeError(f'launcher {cfg.launcher!r} needs CUDA devices; on CPU use --launcher pytorch '
                           '(torchrun / tools/dist_train.sh).')
    backend = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('backend', 'gloo')
    if backend != 'gloo':
        print(f'[mmdynconv] no CUDA device: distributed backend {backend!r} replaced by \'gloo\'', flush=True)
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def allow_runner_checkpoints():
    """Let ``torch.load`` (``weights_only=True`` by default since torch 2.6) read mmengine Runner checkpoints.

    Besides tensors, Runner checkpoints pickle the message hub: ``HistoryBuffer`` objects (whose statistics
    methods are stored as ``getattr(buffer, 'mean')``) and numpy scalars and arrays. Allow-listing exactly those
    globals keeps the weights-only unpickler (which still refuses to *call* anything not allow-listed), instead of
    the blanket ``weights_only=False`` / ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``. Nothing to do on torch < 2.4, which
    has no allow-list (and loads with ``weights_only=False`` by default).
    """
    import numpy as np
    from mmengine.logging import HistoryBuffer

    # numpy 2 moved numpy.core to numpy._core (numpy 1.26 has a numpy._core stub without multiarray)
    numpy_2 = int(np.__version__.split('.')[0]) >= 2
    multiarray = importlib.import_module('numpy._core.multiarray' if numpy_2 else 'numpy.core.multiarray')
    dtypes = [type(np.dtype(t)) for t in (np.float64, np.float32, np.float16, np.int64, np.int32, np.int16,
                                          np.int8, np.uint8, np.bool_)]
    add_safe_globals([HistoryBuffer, getattr, np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
                     + dtypes)
