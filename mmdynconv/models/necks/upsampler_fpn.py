"""FPN whose top-down upsampling is a module built from ``upsample_cfg``, registry type ``'UpsamplerFPN'``.

Guidance protocol: an upsampler that takes a high-resolution guidance declares it with the attribute
``takes_guidance = True`` (on the class, or set on an instance built guided) and has ``forward(x, guidance)``, x
(B, C, H, W) and guidance (B, C_g, S·H, S·W), S its scale factor. ``UpsamplerFPN`` then passes the lateral of the
finer level (before the top-down sum is added to it) as the guidance, extended to exactly 2H×2W by repeating its last
row / column where the level is smaller (odd sizes). Every other upsampler is called as ``up(x)``.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_upsample_layer
from mmengine.model import BaseModule, ModuleList
from mmengine.registry import MODELS

__all__ = ['build_fpn_upsampler', 'build_upsampler_list', 'guidance_of_size', 'upsample_to', 'UpsamplerFPN']

EXTRA_CONVS = ('on_input', 'on_lateral', 'on_output')
INTERPOLATION_TYPES = ('nearest', 'bilinear', 'bicubic')


def build_fpn_upsampler(cfg, channels, scale_factor=2):
    """Build one ×``scale_factor`` upsampler for ``channels`` channels from a config with a ``type``.

    mmcv's upsamplers take different arguments; this fills in what each needs:
    ``'nearest'`` / ``'bilinear'`` / ``'bicubic'``: ``nn.Upsample(scale_factor, mode)``; ``'deconv'``: a
    ConvTranspose2d (``kernel_size`` default 4) with the padding that doubles the size exactly;
    ``'pixel_shuffle'``: ``in_channels``, ``out_channels``, ``scale_factor``, ``upsample_kernel`` (default 3);
    any other type (``'carafe'``, ``'ddf_up'``, user types): ``channels`` and ``scale_factor``, mmcv's CARAFE
    convention.
    """
    cfg = dict(cfg)
    kind = cfg['type']
    if kind in INTERPOLATION_TYPES:
        cfg.setdefault('scale_factor', scale_factor)
        if kind != 'nearest':
            cfg.setdefault('align_corners', False)
        return build_upsample_layer(cfg)
    if kind == 'deconv':
        k = cfg.pop('kernel_size', 4)
        p = (k - 1) // 2
        return build_upsample_layer(cfg, in_channels=channels, out_channels=channels, kernel_size=k,
                                    stride=scale_factor, padding=p, output_padding=scale_factor + 2 * p - k)
    if kind == 'pixel_shuffle':
        cfg.setdefault('upsample_kernel', 3)
        return build_upsample_layer(cfg, in_channels=channels, out_channels=channels, scale_factor=scale_factor)
    return build_upsample_layer(cfg, channels=channels, scale_factor=scale_factor)


def build_upsampler_list(upsample_cfg, channels, count, owner):
    """``count`` ×2 upsamplers built by :func:`build_fpn_upsampler` in an mmengine ``ModuleList`` (their own
    ``init_weights`` run after the owner's), or None without ``upsample_cfg``; a config without a ``type`` is a
    ValueError naming ``owner``."""
    if upsample_cfg is None:
        return None
    if 'type' not in upsample_cfg:
        raise ValueError(f'{owner}: upsample_cfg needs a type, got {upsample_cfg!r}')
    return ModuleList([build_fpn_upsampler(upsample_cfg, channels) for _ in range(count)])


def guidance_of_size(lateral, h, w):
    """``lateral`` (B, C, h', w') as (B, C, h, w): rows and columns beyond h' / w' repeat the last one, rows and
    columns beyond h / w are dropped (the upsampled map is then smaller than the lateral, which ``UpsamplerFPN``
    reports)."""
    th, tw = lateral.shape[2:]
    if th != h:
        lateral = lateral.index_select(2, torch.arange(h, device=lateral.device).clamp_(max=th - 1))
    if tw != w:
        lateral = lateral.index_select(3, torch.arange(w, device=lateral.device).clamp_(max=tw - 1))
    return lateral


def upsample_to(upsampler, x, target, where):
    """×2 ``upsampler`` applied to x (B, C, H, W), cropped to ``target``'s size (B, C_t, H_t, W_t); ``target`` is
    the guidance of a guided upsampler (module docstring). An upsampled map smaller than ``target`` is a ValueError
    starting with ``where``."""
    if getattr(upsampler, 'takes_guidance', False):
        up = upsampler(x, guidance_of_size(target, 2 * x.shape[2], 2 * x.shape[3]))
    else:
        up = upsampler(x)
    (h, w), (th, tw) = up.shape[2:], target.shape[2:]
    if h < th or w < tw:
        raise ValueError(f'{where} upsampled to {(h, w)}, smaller than its target {(th, tw)}; check the '
                         f'upsampler\'s scale factor')
    return up[:, :, :th, :tw]


@MODELS.register_module()
class UpsamplerFPN(BaseModule):
    """Feature pyramid network with a pluggable top-down upsampler.

    Same arguments and outputs as mmdet's / mmseg's ``FPN`` (drop-in for either; ``end_level`` is inclusive as in
    mmdet, where mmseg's is exclusive), except ``upsample_cfg``:

    - with a ``type`` (``'ddf_up'``, ``'nearest'``, ``'bilinear'``, ``'deconv'``, ``'pixel_shuffle'``,
      ``'carafe'``, any registered upsampler), one ×2 upsampler module per top-down step is built with
      :func:`build_fpn_upsampler`. If an upsampled map is larger than the lateral it is added to (odd input sizes),
      it is cropped to the lateral's size; a smaller one is an error;
    - without a ``type`` (mmdet's default ``dict(mode='nearest')``), it is passed to ``F.interpolate`` exactly as
      mmdet's FPN does, so the output equals mmdet's for the same weights.

    A guided upsampler (``takes_guidance``: ``'fade'``, or ``'ddf_up'`` built with ``guidance_channels`` =
    ``out_channels`` and ``guidance_at='output'``) gets the finer level's lateral as its guidance (module docstring).

    Inputs: tuple of (B, in_channels[i], H_i, W_i). Outputs: tuple of ``num_outs`` (B, out_channels, H_j, W_j).
    """

    def __init__(self, in_channels, out_channels, num_outs, start_level=0, end_level=-1, add_extra_convs=False,
                 relu_before_extra_convs=False, no_norm_on_lateral=False, conv_cfg=None, norm_cfg=None,
                 act_cfg=None, upsample_cfg=dict(type='nearest'),
                 init_cfg=dict(type='Xavier', layer='Conv2d', distribution='uniform')):
        super().__init__(init_cfg=init_cfg)
        if not isinstance(in_channels, (list, tuple)) or not in_channels:
            raise ValueError(f'UpsamplerFPN: in_channels must be a non-empty list, got {in_channels!r}')
        num_ins = len(in_channels)
        if end_level == -1 or end_level == num_ins - 1:
            self.backbone_end_level = num_ins
            if num_outs < num_ins - start_level:
                raise ValueError(f'UpsamplerFPN: num_outs must be >= {num_ins - start_level} '
                                 f'(inputs from start_level), got {num_outs}')
        else:
            if not 0 <= end_level < num_ins or num_outs != end_level - start_level + 1:
                raise ValueError(f'UpsamplerFPN: with end_level={end_level}, num_outs must be '
                                 f'end_level - start_level + 1 = {end_level - start_level + 1}, got {num_outs}')
            self.backbone_end_level = end_level + 1
        if add_extra_convs is True:
            add_extra_convs = 'on_input'
        if add_extra_convs not in (False,) + EXTRA_CONVS:
            raise ValueError(f'UpsamplerFPN: add_extra_convs must be a bool or one of {EXTRA_CONVS}, '
                             f'got {add_extra_convs!r}')
        self.in_channels, self.out_channels, self.num_ins, self.num_outs = in_channels, out_channels, num_ins, num_outs
        self.start_level, self.end_level = start_level, end_level
        self.add_extra_convs, self.relu_before_extra_convs = add_extra_convs, relu_before_extra_convs
        self.upsample_cfg = dict(upsample_cfg)

        def conv(cin, k, norm=norm_cfg, **kw):
            return ConvModule(cin, out_channels, k, padding=(k - 1) // 2, conv_cfg=conv_cfg, norm_cfg=norm,
                              act_cfg=act_cfg, inplace=False, **kw)

        levels = range(start_level, self.backbone_end_level)
        # nn.ModuleList, as in mmdet's FPN: the neck's Xavier init_cfg stays final for these convs
        self.lateral_convs = nn.ModuleList(
            [conv(in_channels[i], 1, norm=None if no_norm_on_lateral else norm_cfg) for i in levels])
        self.fpn_convs = nn.ModuleList([conv(out_channels, 3) for _ in levels])
        extra_levels = num_outs - self.backbone_end_level + start_level
        for i in range(extra_levels if add_extra_convs else 0):
            cin = in_channels[self.backbone_end_level - 1] if i == 0 and add_extra_convs == 'on_input' \
                else out_channels
            self.fpn_convs.append(conv(cin, 3, stride=2))
        self.upsamplers = None
        if 'type' in self.upsample_cfg:  # mmengine's ModuleList: upsamplers' own init_weights run after Xavier
            self.upsamplers = ModuleList([build_fpn_upsampler(self.upsample_cfg, out_channels)
                                          for _ in range(len(levels) - 1)])

    def _upsample(self, i, x, target):
        """Bring x (level i) to the size of target (level i − 1, a lateral: the guidance of a guided upsampler)."""
        if self.upsamplers is None:
            if 'scale_factor' in self.upsample_cfg:
                return F.interpolate(x, **self.upsample_cfg)
            return F.interpolate(x, size=target.shape[2:], **self.upsample_cfg)
        return upsample_to(self.upsamplers[i - 1], x, target, f'UpsamplerFPN: level {i}')

    def forward(self, inputs):
        if len(inputs) != self.num_ins:
            raise ValueError(f'UpsamplerFPN: expected {self.num_ins} input levels, got {len(inputs)}')
        laterals = [conv(inputs[i + self.start_level]) for i, conv in enumerate(self.lateral_convs)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + self._upsample(i, laterals[i], laterals[i - 1])
        outs = [self.fpn_convs[i](lat) for i, lat in enumerate(laterals)]
        used = len(outs)
        if not self.add_extra_convs:
            while len(outs) < self.num_outs:
                outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        elif self.num_outs > used:
            source = {'on_input': inputs[self.backbone_end_level - 1], 'on_lateral': laterals[-1],
                      'on_output': outs[-1]}[self.add_extra_convs]
            outs.append(self.fpn_convs[used](source))
            for i in range(used + 1, self.num_outs):
                prev = F.relu(outs[-1]) if self.relu_before_extra_convs else outs[-1]
                outs.append(self.fpn_convs[i](prev))
        return tuple(outs)
