"""``GuidedDepthUpsampler``: ×S depth super-resolution with DDF-Up, optionally guided by the RGB image."""
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from torch import nn

from mmdynconv.layers.ddf_upsample import DDFUpsample

# 'mse' (default): the metric is RMSE. With 'l1' the residual learnt in a few hundred iterations stayed near zero
# (at an uncertain edge pixel L1's optimum is the median error, 0), i.e. bicubic upsampling.
LOSSES = dict(mse=F.mse_loss, l1=F.l1_loss)


def _conv_relu(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]


@MODELS.register_module()
class GuidedDepthUpsampler(BaseModel):
    """Residual depth upsampler: ``pred = bicubic(lr) + depth_scale · head(DDFUp(enc(lr / depth_scale), g))``.

    - ``enc``: two 3×3 conv+ReLU layers on the low-resolution depth; the normalised depth itself is kept as
      feature channel 0 (``channels`` features in all).
    - ``DDFUp``: :class:`~mmdynconv.layers.DDFUpsample` ×S. With ``guidance_channels`` set, its spatial filters are
      predicted from ``g = genc(rgb)``: a 3×3 conv+ReLU on the full-resolution RGB, then an S×S conv of stride S
      that encodes every S×S block of output pixels into ``guidance_channels`` values at the input resolution
      (``guidance_at='input'``; a learned, compressed form of the layer's ``guidance_at='output'``
      pixel-unshuffle, which costs S² times more channels), concatenated with the depth features: the spatial
      filters see RGB and depth, so the guided network contains the unguided one. With
      ``guidance_channels=None`` it is plain (unguided) DDF-Up (spatial filters from the depth features alone),
      and the network never sees the RGB image.
    - ``head``: 3×3 conv+ReLU, 3×3 conv → 1 channel at the output resolution.

    Inputs (``forward``): ``inputs = dict(depth_lr=(B, 1, h, w), rgb=(B, 3, S·h, S·w))`` (metres, [0, 1]),
    ``data_samples = dict(depth=(B, 1, S·h, S·w))``. Modes: ``'tensor'`` → (B, 1, S·h, S·w) metres;
    ``'loss'`` → ``dict(loss=MSE (m²) or L1 (m))``; ``'predict'`` → one ``dict(pred=(S·h, S·w), gt=...)`` per sample.
    """

    def __init__(self, scale_factor, channels=16, guidance_channels=16, kernel_size=3, depth_scale=5.0, loss='mse',
                 data_preprocessor=None, init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if loss not in LOSSES:
            raise ValueError(f'GuidedDepthUpsampler: loss must be one of {tuple(LOSSES)}, got {loss!r}')
        self.loss = loss
        if not isinstance(channels, int) or channels < 2:
            raise ValueError(f'GuidedDepthUpsampler: channels must be an int >= 2, got {channels!r}')
        if not depth_scale > 0:
            raise ValueError(f'GuidedDepthUpsampler: depth_scale must be > 0, got {depth_scale!r}')
        self.scale_factor, self.depth_scale = scale_factor, float(depth_scale)
        self.encoder = nn.Sequential(*_conv_relu(1, channels - 1), *_conv_relu(channels - 1, channels - 1))
        self.guidance_encoder = None
        if guidance_channels is not None:
            self.guidance_encoder = nn.Sequential(
                *_conv_relu(3, guidance_channels),
                nn.Conv2d(guidance_channels, guidance_channels, scale_factor, stride=scale_factor))
        spatial_in = None if guidance_channels is None else guidance_channels + channels
        self.upsample = DDFUpsample(channels, scale_factor, kernel_size, guidance_channels=spatial_in,
                                    guidance_at='input')
        self.head = nn.Sequential(*_conv_relu(channels, channels), nn.Conv2d(channels, 1, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)  # start as bicubic upsampling
        nn.init.zeros_(self.head[-1].bias)

    @property
    def guided(self):
        return self.guidance_encoder is not None

    def predict_depth(self, depth_lr, rgb):
        """(B, 1, h, w) metres, (B, 3, S·h, S·w) → (B, 1, S·h, S·w) metres."""
        s = self.scale_factor
        if depth_lr.dim() != 4 or depth_lr.shape[1] != 1:
            raise ValueError(f'GuidedDepthUpsampler: depth_lr must be (B, 1, h, w), got {tuple(depth_lr.shape)}')
        b, _, h, w = depth_lr.shape
        if rgb.shape != (b, 3, s * h, s * w):
            raise ValueError(f'GuidedDepthUpsampler: rgb must be (B, 3, {s}·h, {s}·w) = {(b, 3, s * h, s * w)}, '
                             f'got {tuple(rgb.shape)}')
        x = depth_lr / self.depth_scale
        feats = torch.cat([x, self.encoder(x)], 1)
        if self.guided:
            up = self.upsample(feats, torch.cat([self.guidance_encoder(rgb), feats], 1))
        else:
            up = self.upsample(feats)
        base = F.interpolate(depth_lr, scale_factor=s, mode='bicubic', align_corners=False)
        return base + self.depth_scale * self.head(up)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        pred = self.predict_depth(inputs['depth_lr'], inputs['rgb'])
        if mode == 'tensor':
            return pred
        if data_samples is None:
            raise ValueError(f"GuidedDepthUpsampler: mode {mode!r} needs data_samples with the 'depth' target")
        gt = data_samples['depth']
        if mode == 'loss':
            return dict(loss=LOSSES[self.loss](pred, gt))
        if mode == 'predict':
            return [dict(pred=p[0], gt=g[0]) for p, g in zip(pred, gt)]
        raise ValueError(f"GuidedDepthUpsampler: mode must be 'tensor', 'loss' or 'predict', got {mode!r}")
