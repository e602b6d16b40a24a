"""Train an mmdet / mmseg model from a config with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options k=v ...]
    bash tools/dist_train.sh CONFIG NUM_PROCS [args...]          # torchrun, --launcher pytorch

The model's registry scope comes from the config's ``default_scope`` ('mmdet' or 'mmseg'); configs load
mmdynconv through ``custom_imports``.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone without installing

from mmengine.config import DictAction  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mmdynconv.utils import (  # noqa: E402
    allow_runner_checkpoints,
    check_data_paths,
    enable_amp,
    load_config,
    setup_cpu_distributed,
)
from mmdynconv.utils.config_scope import replace_package_scope  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Train a detector or segmentor')
    p.add_argument('config', help='config file path')
    p.add_argument('--work-dir', help='folder for logs and checkpoints (default: ./work_dirs/<config name>)')
    p.add_argument('--resume', nargs='?', type=str, const='auto',
                   help='resume from CKPT, or (no value) from the latest checkpoint in the work dir')
    p.add_argument('--amp', action='store_true', help='automatic mixed precision (CUDA only)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config entries, e.g. train_cfg.max_iters=100 model.backbone.depth=101')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                   help='job launcher')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_config(args):
    cfg = load_config(args.config, args.launcher, args.work_dir, args.cfg_options)
    replace_package_scope(cfg)  # `mmdynconv::` bases: mmdynconv/utils/config_scope.py
    if args.amp:
        enable_amp(cfg)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume: checkpoint {args.resume!r} does not exist')
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_config(args)
    check_data_paths(cfg)
    allow_runner_checkpoints()
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()


if __name__ == '__main__':
    main()
