"""Evaluate a checkpoint with mmengine's Runner and print (and optionally save) the metrics.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out-metrics FILE.json] [--cfg-options k=v ...]
    bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [args...]
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a clone without installing

from mmengine.config import DictAction  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mmdynconv.utils import allow_runner_checkpoints, check_data_paths, load_config, setup_cpu_distributed  # noqa: E402
from mmdynconv.utils.config_scope import replace_package_scope  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Test (and evaluate) a detector or segmentor')
    p.add_argument('config', help='config file path')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--work-dir', help='folder for logs (default: ./work_dirs/<config name>)')
    p.add_argument('--out-metrics', help='also write the metrics to this JSON file')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if not osp.isfile(args.checkpoint):
        p.error(f'checkpoint {args.checkpoint!r} does not exist')
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.launcher, args.work_dir, args.cfg_options)
    replace_package_scope(cfg)  # `mmdynconv::` bases: mmdynconv/utils/config_scope.py
    cfg.load_from = args.checkpoint
    check_data_paths(cfg)
    allow_runner_checkpoints()
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    metrics = runner.test()
    if args.out_metrics and runner.rank == 0:
        os.makedirs(osp.dirname(osp.abspath(args.out_metrics)), exist_ok=True)
        with open(args.out_metrics, 'w') as f:
            json.dump({k: float(v) for k, v in metrics.items()}, f, indent=2)
    return metrics


if __name__ == '__main__':
    main()
