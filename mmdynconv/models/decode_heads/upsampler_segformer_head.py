"""SegFormer's all-MLP decode head with its upsampling done by modules built from ``upsample_cfg``, registry type
``'UpsamplerSegformerHead'`` (the setting in which FADE and SAPA report their segmentation results, docs/fade.md)."""
import torch
from mmengine.registry import MODELS
from mmseg.models.decode_heads import SegformerHead

from ..necks.upsampler_fpn import build_upsampler_list, upsample_to

__all__ = ['UpsamplerSegformerHead']


@MODELS.register_module()
class UpsamplerSegformerHead(SegformerHead):
    """mmseg's ``SegformerHead`` whose resizes to the finest level are chains of ×2 upsamplers.

    Without ``upsample_cfg`` it is mmseg's head unchanged (interpolation by ``interpolate_mode``). With one, level i
    (projected by its 1×1 ConvModule) reaches level 0's size through i ×2 upsamplers built by
    :func:`~mmdynconv.models.necks.upsampler_fpn.build_fpn_upsampler`: n(n−1)/2 of them for n levels (6 for 4),
    stored coarsest level first and each level's steps coarse to fine, as the FADE release orders them. A guided
    upsampler (``takes_guidance``, e.g. ``'fade'``, ``'sapa'``) gets the projected feature of the level it
    upsamples to as its guidance; a map larger than that level (odd sizes) is cropped to it.

    Inputs: the backbone's levels (B, in_channels[i], H_i, W_i), H_i ≈ H_0 / 2^i. Output: (B, num_classes, H_0, W_0).
    """

    def __init__(self, upsample_cfg=None, **kwargs):
        super().__init__(**kwargs)
        self.upsample_cfg = None if upsample_cfg is None else dict(upsample_cfg)
        steps = sum(range(len(self.in_channels)))
        self.upsamplers = build_upsampler_list(self.upsample_cfg, self.channels, steps, 'UpsamplerSegformerHead')

    def forward(self, inputs):
        if self.upsamplers is None:
            return super().forward(inputs)
        inputs = self._transform_inputs(inputs)
        projected = [conv(x) for conv, x in zip(self.convs, inputs)]
        outs, step = [None] * len(projected), 0
        for level in range(len(projected) - 1, 0, -1):
            x = projected[level]
            for target in range(level - 1, -1, -1):
                x = upsample_to(self.upsamplers[step], x, projected[target],
                                f'UpsamplerSegformerHead: level {level}, step to level {target},')
                step += 1
            outs[level] = x
        outs[0] = projected[0]
        return self.cls_seg(self.fusion_conv(torch.cat(outs, dim=1)))
