"""Guided depth upsampling: scenes and their on-disk format, dataset, guided filter, metric, model, training."""
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tool_runner import run_tool

from experiments.depth_upsampling import (
    DepthRMSE,
    GuidedDepthUpsampler,
    RGBDUpsamplingDataset,
    area_downsample,
    box_filter,
    depth_edge_mask,
    guided_filter,
    read_rgbd,
    render_rgbd,
    write_rgbd_dataset,
)


@pytest.fixture(scope='module')
def rgbd_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('rgbd'))
    write_rgbd_dataset(root, num_train=6, num_val=3, size=64, seed=5)
    return root


def test_scenes_deterministic_and_format(rgbd_root, tmp_path):
    write_rgbd_dataset(str(tmp_path), num_train=6, num_val=3, size=64, seed=5)
    for split, n in (('train', 6), ('val', 3)):
        with open(osp.join(rgbd_root, f'{split}.json')) as f:
            index = json.load(f)
        assert index['format'] == 'mmdynconv-rgbd-v1' and index['depth_unit_m'] == 0.001 and len(index['items']) == n
        for item in index['items']:
            for key in ('rgb', 'depth'):
                a = cv2.imread(osp.join(rgbd_root, item[key]), cv2.IMREAD_UNCHANGED)
                b = cv2.imread(osp.join(str(tmp_path), item[key]), cv2.IMREAD_UNCHANGED)
                assert np.array_equal(a, b)
            assert a.dtype == np.uint16 and a.shape == (64, 64)
    rng = np.random.default_rng([5, 0])
    rgb, depth, _ = render_rgbd(rng, 64)
    rgb_read, depth_read = read_rgbd(rgbd_root, index_item(rgbd_root, 'train', 0), 0.001)
    assert np.abs(depth_read - depth).max() <= 0.0005 + 1e-6  # millimetre quantisation
    assert np.array_equal((rgb_read * 255).round().astype(np.uint8), rgb[..., ::-1])


def index_item(root, split, i):
    with open(osp.join(root, f'{split}.json')) as f:
        return json.load(f)['items'][i]


def test_scenes_have_edges_that_do_and_do_not_coincide():
    """Over a few scenes: RGB edges without depth edges (textures, decals) and depth edges without RGB edges
    (camouflaged shapes) both occur, as well as coinciding ones."""
    rng = np.random.default_rng(0)
    rgb_only = depth_only = both = 0
    camouflaged = 0
    for _ in range(12):
        rgb, depth, stats = render_rgbd(rng, 96)
        camouflaged += stats['camouflaged']
        grey = torch.from_numpy(rgb.astype(np.float32).mean(2))
        rgb_edge = depth_edge_mask(grey, 40.0, 1)  # grey-level step > 40 within 3×3
        d_edge = depth_edge_mask(torch.from_numpy(depth).float(), 0.05, 1)
        rgb_only += int((rgb_edge & ~d_edge).sum())
        depth_only += int((d_edge & ~rgb_edge).sum())
        both += int((d_edge & rgb_edge).sum())
    assert camouflaged > 0
    assert rgb_only > 500 and depth_only > 100 and both > 500


def test_write_rgbd_dataset_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='num_train'):
        write_rgbd_dataset(str(tmp_path), num_train=0)
    with pytest.raises(ValueError, match='size'):
        write_rgbd_dataset(str(tmp_path), size=16)


def test_area_downsample_matches_avg_pool():
    d = np.random.default_rng(1).random((2, 12, 8)).astype(np.float32)
    expected = F.avg_pool2d(torch.from_numpy(d)[:, None], 4)[:, 0].numpy()
    np.testing.assert_allclose(area_downsample(d, 4), expected, rtol=1e-6)
    with pytest.raises(ValueError, match='divisible'):
        area_downsample(d, 3)


def test_dataset_samples(rgbd_root):
    ds = RGBDUpsamplingDataset('train.json', 4, data_root=rgbd_root, crop_size=32, flip=True)
    s = ds[0]
    assert s['inputs']['rgb'].shape == (3, 32, 32) and s['inputs']['depth_lr'].shape == (1, 8, 8)
    assert s['data_samples']['depth'].shape == (1, 32, 32)
    torch.testing.assert_close(s['inputs']['depth_lr'][0], F.avg_pool2d(s['data_samples']['depth'], 4)[0])
    val = RGBDUpsamplingDataset('val.json', 8, data_root=rgbd_root, test_mode=True)
    assert len(val) == 3 and val[2]['inputs']['depth_lr'].shape == (1, 8, 8)
    with pytest.raises(ValueError, match='crop_size'):
        RGBDUpsamplingDataset('train.json', 8, data_root=rgbd_root, crop_size=36)
    with pytest.raises(ValueError, match='scale_factor'):
        RGBDUpsamplingDataset('train.json', 1, data_root=rgbd_root)


def _guided_filter_naive(guide, src, r, eps):
    """Per-window ridge regression, then averaging the window coefficients at every pixel (loops; tiny inputs)."""
    c, h, w = guide.shape
    coef = np.zeros((h, w, c + 1))
    for y in range(h):
        for x in range(w):
            ys, xs = slice(max(0, y - r), y + r + 1), slice(max(0, x - r), x + r + 1)
            i = guide[:, ys, xs].reshape(c, -1).T
            p = src[ys, xs].reshape(-1)
            mi, mp = i.mean(0), p.mean()
            cov = (i - mi).T @ (i - mi) / len(p)
            a = np.linalg.solve(cov + eps * np.eye(c), (i - mi).T @ (p - mp) / len(p))
            coef[y, x] = np.append(a, mp - a @ mi)
    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            ys, xs = slice(max(0, y - r), y + r + 1), slice(max(0, x - r), x + r + 1)
            m = coef[ys, xs].reshape(-1, c + 1).mean(0)
            out[y, x] = m[:c] @ guide[:, y, x] + m[c]
    return out


@pytest.mark.parametrize('channels,radius,eps', [(3, 2, 1e-3), (1, 1, 1e-2), (3, 3, 1e-4)])
def test_guided_filter_matches_naive(channels, radius, eps):
    rng = np.random.default_rng(channels + radius)
    guide, src = rng.random((channels, 9, 11)), rng.random((9, 11))
    got = guided_filter(torch.from_numpy(guide)[None], torch.from_numpy(src)[None, None], radius, eps)
    np.testing.assert_allclose(got[0, 0].numpy(), _guided_filter_naive(guide, src, radius, eps), atol=1e-5)


def test_guided_filter_limits_and_errors():
    g, p = torch.rand(1, 3, 10, 12), torch.rand(1, 1, 10, 12)
    torch.testing.assert_close(guided_filter(g, torch.full_like(p, 2.5), 2, 1e-3), torch.full_like(p, 2.5))
    # huge eps: a → 0, q = box(box(p)), the mean filter applied twice
    torch.testing.assert_close(guided_filter(g, p, 2, 1e9), box_filter(box_filter(p, 2), 2), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match='radius'):
        guided_filter(g, p, 0, 1e-3)
    with pytest.raises(ValueError, match='src'):
        guided_filter(g, p[:, :, :5], 2, 1e-3)


def test_metric_values():
    gt = torch.ones(16, 16)
    gt[:, 8:] = 3.0
    metric = DepthRMSE(edge_threshold=0.05, edge_radius=1)
    metric.process(None, [dict(pred=gt + 0.01, gt=gt)])
    pred = gt.clone()
    pred[:, 7:9] += 0.1  # error only at the edge
    metric.process(None, [dict(pred=pred, gt=gt)])
    m = metric.compute_metrics(metric.results)
    # edge pixels: columns 7 and 8 (32 per image); flat: 224 per image, error 0.01 in the first, 0 in the second
    assert m['rmse_flat'] == pytest.approx(1000 * (224 * 0.01 ** 2 / 448) ** 0.5, rel=1e-4)
    assert m['rmse_edge'] == pytest.approx(1000 * ((32 * 0.01 ** 2 + 32 * 0.1 ** 2) / 64) ** 0.5, rel=1e-4)
    assert m['rmse'] == pytest.approx(1000 * ((256 * 0.01 ** 2 + 32 * 0.1 ** 2) / 512) ** 0.5, rel=1e-4)


@pytest.mark.parametrize('scale', [4, 8])
@pytest.mark.parametrize('guidance', [6, None])
def test_model_modes_and_guidance(scale, guidance):
    torch.manual_seed(0)
    model = GuidedDepthUpsampler(scale, channels=6, guidance_channels=guidance)
    with torch.no_grad():
        for p in model.head[-1].parameters():  # leave the bicubic start
            p.normal_(0, 0.1)
    lr = torch.rand(2, 1, 3, 5) + 1
    rgb = torch.rand(2, 3, 3 * scale, 5 * scale)
    gt = torch.rand(2, 1, 3 * scale, 5 * scale)
    out = model(dict(depth_lr=lr, rgb=rgb))
    assert out.shape == (2, 1, 3 * scale, 5 * scale)
    loss = model(dict(depth_lr=lr, rgb=rgb), dict(depth=gt), mode='loss')['loss']
    torch.testing.assert_close(loss, F.mse_loss(out, gt))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    preds = model(dict(depth_lr=lr, rgb=rgb), dict(depth=gt), mode='predict')
    assert len(preds) == 2 and preds[0]['pred'].shape == (3 * scale, 5 * scale)
    changed = model(dict(depth_lr=lr, rgb=torch.rand_like(rgb)))
    assert (guidance is None) == torch.equal(changed, out)  # only the guided network reads the RGB image
    with pytest.raises(ValueError, match='rgb must be'):
        model(dict(depth_lr=lr, rgb=rgb[..., :-1]))


def test_model_starts_as_bicubic():
    model = GuidedDepthUpsampler(4, channels=4, guidance_channels=4)
    lr, rgb = torch.rand(1, 1, 4, 4), torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(model(dict(depth_lr=lr, rgb=rgb)),
                               F.interpolate(lr, scale_factor=4, mode='bicubic', align_corners=False))


@pytest.mark.slow
def test_train_config_through_tools_train(rgbd_root, tmp_path):
    """A depth config (experiments/depth_upsampling/configs) trains through tools/train.py (mmengine Runner) and
    reports the metric."""
    config = 'experiments/depth_upsampling/configs/ddf-up-guided_x8_rgbd-shapes.py'
    proc = run_tool('tools/train.py', config, '--work-dir', str(tmp_path),
                    '--cfg-options', f'train_dataloader.dataset.data_root={rgbd_root}',
                    f'val_dataloader.dataset.data_root={rgbd_root}', f'test_dataloader.dataset.data_root={rgbd_root}',
                    'train_dataloader.dataset.crop_size=32', 'train_cfg.max_iters=3', 'train_cfg.val_interval=3',
                    'default_hooks.checkpoint.interval=3', 'param_scheduler.0.end=2', 'param_scheduler.1.begin=2',
                    'param_scheduler.1.end=3')
    assert 'rmse_edge' in proc.stdout
    assert osp.isfile(osp.join(tmp_path, 'iter_3.pth'))


@pytest.mark.slow
def test_demo_writes_table_and_figure(rgbd_root, tmp_path):
    proc = run_tool('tools/depth_upsampling_demo.py', '--data-root', rgbd_root, '--out', str(tmp_path),
                    '--scales', '8', '--seeds', '0', '1', '--max-iters', '2')
    table = open(osp.join(tmp_path, 'results.md')).read()
    assert 'RGB-guided' in table and 'guided filter' in table and '×8 RMSE' in table and '±' in table
    assert osp.getsize(osp.join(tmp_path, 'figure.png')) > 10000
    assert 'x8 guided seed 1' in proc.stdout
