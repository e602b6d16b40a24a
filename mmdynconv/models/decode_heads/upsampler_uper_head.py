"""UPerNet's decode head with the ×2 upsampling of its top-down (FPN) path done by modules built from
``upsample_cfg``, registry type ``'UpsamplerUPerHead'``."""
import torch
from mmengine.registry import MODELS
from mmseg.models.decode_heads import UPerHead
from mmseg.models.utils import resize

from ..necks.upsampler_fpn import build_upsampler_list, upsample_to

__all__ = ['UpsamplerUPerHead']


@MODELS.register_module()
class UpsamplerUPerHead(UPerHead):
    """mmseg's ``UPerHead`` whose top-down bilinear resizes are ×2 upsamplers (as ``UpsamplerFPN`` does for an FPN).

    Without ``upsample_cfg`` it is mmseg's head unchanged. With one, the step from level i to level i − 1 of the
    top-down path (n − 1 steps for n levels: 3 for ResNet's four) is an upsampler built by
    :func:`~mmdynconv.models.necks.upsampler_fpn.build_fpn_upsampler`; a guided one (``takes_guidance``: ``'fade'``,
    ``'sapa'``, a guided ``'ddf_up'``) gets the lateral of level i − 1 (before the top-down sum) as its guidance, and
    a map larger than that lateral (odd sizes) is cropped to it. The resizes that bring every level to level 0's size
    before the fusion stay bilinear, as in mmseg.

    Inputs: the backbone's levels (B, in_channels[i], H_i, W_i). Output: (B, num_classes, H_0, W_0).
    """

    def __init__(self, upsample_cfg=None, **kwargs):
        super().__init__(**kwargs)
        self.upsample_cfg = None if upsample_cfg is None else dict(upsample_cfg)
        steps = len(self.in_channels) - 1
        self.upsamplers = build_upsampler_list(self.upsample_cfg, self.channels, steps, 'UpsamplerUPerHead')

    def _forward_feature(self, inputs):
        if self.upsamplers is None:
            return super()._forward_feature(inputs)
        inputs = self._transform_inputs(inputs)
        laterals = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self.psp_forward(inputs))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + upsample_to(self.upsamplers[i - 1], laterals[i], laterals[i - 1],
                                                            f'UpsamplerUPerHead: level {i}')
        outs = [self.fpn_convs[i](laterals[i]) for i in range(len(laterals) - 1)] + [laterals[-1]]
        size = outs[0].shape[2:]
        outs = [outs[0]] + [resize(o, size=size, mode='bilinear', align_corners=self.align_corners)
                            for o in outs[1:]]
        return self.fpn_bottleneck(torch.cat(outs, dim=1))
