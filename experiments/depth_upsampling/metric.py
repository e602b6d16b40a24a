"""``DepthRMSE``: root-mean-square depth error over a split, overall, at depth edges and away from them."""
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS


def depth_edge_mask(depth, threshold=0.05, radius=2):
    """(H, W) metres → (H, W) bool: pixels whose (2·radius+1)² neighbourhood spans more than ``threshold`` metres."""
    d = depth[None, None]
    k = 2 * radius + 1
    span = F.max_pool2d(d, k, 1, radius) + F.max_pool2d(-d, k, 1, radius)
    return span[0, 0] > threshold


@METRICS.register_module()
class DepthRMSE(BaseMetric):
    """RMSE in millimetres, pooled over every pixel of the split: ``rmse``, ``rmse_edge`` (pixels within
    ``edge_radius`` of a depth step larger than ``edge_threshold`` metres, see :func:`depth_edge_mask`) and
    ``rmse_flat`` (all other pixels), and ``mae`` (mm).

    Expects predictions ``dict(pred=(H, W), gt=(H, W))`` in metres (``GuidedDepthUpsampler``'s predict mode).
    """

    default_prefix = None

    def __init__(self, edge_threshold=0.05, edge_radius=2, collect_device='cpu', prefix=None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not edge_threshold > 0 or not isinstance(edge_radius, int) or edge_radius < 0:
            raise ValueError(f'DepthRMSE: edge_threshold must be > 0 and edge_radius an int >= 0, got '
                             f'{edge_threshold!r}, {edge_radius!r}')
        self.edge_threshold, self.edge_radius = edge_threshold, edge_radius

    def process(self, data_batch, data_samples):
        for sample in data_samples:
            pred, gt = sample['pred'].detach().float().cpu(), sample['gt'].float().cpu()
            if pred.shape != gt.shape or pred.dim() != 2:
                raise ValueError(f'DepthRMSE: pred and gt must be (H, W) of one shape, got {tuple(pred.shape)} '
                                 f'and {tuple(gt.shape)}')
            err = pred - gt
            edge = depth_edge_mask(gt, self.edge_threshold, self.edge_radius)
            sq = err.square()
            self.results.append(dict(sq=sq.sum().item(), n=sq.numel(), abs=err.abs().sum().item(),
                                     sq_edge=sq[edge].sum().item(), n_edge=int(edge.sum())))

    def compute_metrics(self, results):
        tot = {k: sum(r[k] for r in results) for k in ('sq', 'n', 'abs', 'sq_edge', 'n_edge')}
        n_flat = tot['n'] - tot['n_edge']
        def rmse(sq, n):
            return 1000 * (sq / n) ** 0.5 if n else float('nan')

        return dict(rmse=rmse(tot['sq'], tot['n']), rmse_edge=rmse(tot['sq_edge'], tot['n_edge']),
                    rmse_flat=rmse(tot['sq'] - tot['sq_edge'], n_flat), mae=1000 * tot['abs'] / tot['n'])
