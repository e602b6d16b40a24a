"""tools/train.py, tools/test.py and tools/dist_train.sh on the demo data: training, checkpoints, resume, evaluation,
a 2-process distributed (gloo) run, and clear errors. Real (short) runs of mmengine's Runner."""
import argparse
import copy
import json
import os
import os.path as osp
import shutil
import subprocess

import pytest
import torch
from tool_runner import ROOT, run_tool

DET = 'configs/demo/faster-rcnn_tiny-r50_fpn_shapes.py'
SEG = 'configs/demo/semfpn_tiny-r50_shapes.py'


def det_options(data, epochs, batch=4):
    """Point the demo detector at the small test dataset: 8 images / batch 4 = 2 iterations an epoch."""
    root = osp.join(data, 'coco') + '/'
    ann = root + 'annotations/instances_val2017.json'
    opts = [f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
            'default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.max_keep_ckpts=-1',
            'default_hooks.logger.interval=1', f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}']
    for split in ('train', 'val', 'test'):
        opts += [f'{split}_dataloader.dataset.data_root={root}', f'{split}_dataloader.num_workers=0',
                 f'{split}_dataloader.persistent_workers=False', f'{split}_dataloader.batch_size={batch}']
    return opts


def env_without_weights_only_override():
    env = dict(os.environ)
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
    env.pop('TORCH_FORCE_WEIGHTS_ONLY_LOAD', None)
    return env


@pytest.fixture(scope='module')
def trained(demo_data, tmp_path_factory):
    """Two epochs (4 iterations) of the demo detector; checkpoints after each epoch."""
    work = tmp_path_factory.mktemp('train')
    run_tool('tools/train.py', DET, '--work-dir', str(work), '--cfg-options', *det_options(demo_data, 2),
             env=env_without_weights_only_override())
    return work


@pytest.mark.slow
def test_training_writes_checkpoints(trained):
    for name in ('epoch_1.pth', 'epoch_2.pth', 'last_checkpoint'):
        assert osp.exists(trained / name)
    ckpt = torch.load(trained / 'epoch_2.pth', map_location='cpu', weights_only=False)
    assert ckpt['meta']['epoch'] == 2 and ckpt['meta']['iter'] == 4
    assert 'optimizer' in ckpt and ckpt['state_dict']


@pytest.mark.slow
def test_resume_continues_without_environment_variables(trained, demo_data, tmp_path):
    work = tmp_path / 'resume'
    shutil.copytree(trained, work)
    os.remove(work / 'epoch_2.pth')  # the latest checkpoint is now epoch 1 (resume=auto must find it)
    with open(work / 'last_checkpoint', 'w') as f:
        f.write(str(work / 'epoch_1.pth'))
    proc = run_tool('tools/train.py', DET, '--work-dir', str(work), '--resume', '--cfg-options',
                    *det_options(demo_data, 3), env=env_without_weights_only_override())
    assert 'resumed epoch: 1, iter: 2' in proc.stdout
    ckpt = torch.load(work / 'epoch_3.pth', map_location='cpu', weights_only=False)
    assert ckpt['meta']['epoch'] == 3 and ckpt['meta']['iter'] == 6
    # an explicit checkpoint path works as well
    proc = run_tool('tools/train.py', DET, '--work-dir', str(tmp_path / 'explicit'), '--resume',
                    str(trained / 'epoch_2.pth'), '--cfg-options', *det_options(demo_data, 3),
                    env=env_without_weights_only_override())
    assert 'resumed epoch: 2, iter: 4' in proc.stdout


@pytest.mark.slow
def test_resume_restores_optimizer_state(trained, demo_data, tmp_path):
    """In-process Runner: after resume, the optimizer state equals the checkpoint's (moment estimates included)."""
    from mmengine.config import DictAction
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    from mmdynconv.utils import allow_runner_checkpoints, load_config

    class Record(Hook):
        def before_train(self, runner):
            self.iter, self.epoch = runner.iter, runner.epoch
            self.state = copy.deepcopy(runner.optim_wrapper.optimizer.state_dict())  # buffers mutate in place

    parser = argparse.ArgumentParser()
    parser.add_argument('--o', nargs='+', action=DictAction)
    options = parser.parse_args(['--o', *det_options(demo_data, 3)]).o
    cfg = load_config(osp.join(ROOT, DET), work_dir=str(tmp_path), cfg_options=options)
    cfg.resume, cfg.load_from = True, str(trained / 'epoch_2.pth')
    allow_runner_checkpoints()
    runner = Runner.from_cfg(cfg)
    record = Record()
    runner.register_hook(record)
    runner.train()
    saved = torch.load(trained / 'epoch_2.pth', map_location='cpu', weights_only=False)['optimizer']
    assert (record.epoch, record.iter) == (2, 4) and runner.iter == 6
    assert len(record.state['state']) == len(saved['state']) > 0
    for key, value in saved['state'].items():  # AdamW: step, exp_avg, exp_avg_sq
        assert set(record.state['state'][key]) == set(value) >= {'exp_avg', 'exp_avg_sq'}
        for name, tensor in value.items():
            torch.testing.assert_close(record.state['state'][key][name], tensor)
    assert record.state['param_groups'][0]['lr'] == saved['param_groups'][0]['lr']


@pytest.mark.slow
def test_test_tool_prints_and_saves_metrics(trained, demo_data, tmp_path):
    out = tmp_path / 'metrics.json'
    proc = run_tool('tools/test.py', DET, str(trained / 'epoch_2.pth'), '--work-dir', str(tmp_path),
                    '--out-metrics', str(out), '--cfg-options', *det_options(demo_data, 2),
                    env=env_without_weights_only_override())
    metrics = json.load(open(out))
    assert 0.0 <= metrics['coco/bbox_mAP'] <= 1.0 and 'coco/bbox_mAP' in proc.stdout


@pytest.mark.slow
def test_segmentation_demo_trains(demo_data, tmp_path):
    root = osp.join(demo_data, 'ade20k')
    opts = ['train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
            'train_dataloader.batch_size=2', 'default_hooks.logger.interval=1']
    for split in ('train', 'val', 'test'):
        opts += [f'{split}_dataloader.dataset.data_root={root}', f'{split}_dataloader.num_workers=0',
                 f'{split}_dataloader.persistent_workers=False']
    proc = run_tool('tools/train.py', SEG, '--work-dir', str(tmp_path), '--cfg-options', *opts)
    assert 'mIoU' in proc.stdout and osp.exists(tmp_path / 'iter_2.pth')


@pytest.mark.slow
def test_distributed_two_processes_gloo(demo_data, tmp_path):
    env = env_without_weights_only_override()
    env.update(PYTHON=os.sys.executable, PORT=str(29500 + os.getpid() % 1000), OMP_NUM_THREADS='1')
    proc = subprocess.run(['bash', 'tools/dist_train.sh', DET, '2', '--work-dir', str(tmp_path), '--cfg-options',
                           *det_options(demo_data, 1, batch=2)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "backend 'nccl' replaced by 'gloo'" in proc.stdout
    assert 'Distributed training: True' in proc.stdout
    # 8 images, 2 processes x batch 2: 2 iterations per epoch, each process seeing half the data
    ckpt = torch.load(tmp_path / 'epoch_1.pth', map_location='cpu', weights_only=False)
    assert ckpt['meta']['iter'] == 2


def test_amp_on_cpu_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip('checks the CPU error')
    proc = run_tool('tools/train.py', DET, '--amp', '--work-dir', str(tmp_path), check=False)
    assert proc.returncode != 0 and '--amp needs a CUDA device' in proc.stdout


def test_resume_missing_checkpoint_is_a_clear_error(tmp_path):
    proc = run_tool('tools/train.py', DET, '--resume', str(tmp_path / 'nope.pth'), check=False)
    assert proc.returncode != 0 and "--resume: checkpoint" in proc.stdout and 'does not exist' in proc.stdout
