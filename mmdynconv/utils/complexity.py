"""FLOP and parameter counting that sees mmdynconv's ops: mmengine's ``FlopAnalyzer`` plus handles for our ops.

Conventions (mmengine / fvcore, extended):

- one multiply-accumulate counts as one FLOP; element-wise ops (activations, FilterNorm's standardisation, sums of
  bands) are not counted, except the products that define an op (the DDF kernel combination, FDConv's per-entry
  modulation, FBM's band modulation), one FLOP each;
- a real FFT or inverse FFT of N points (any dimensionality, N = product of the sizes) costs 2.5·N·log2(N) FLOPs,
  half the classic 5·N·log2(N) estimate of a complex FFT. FFT-defined operators are counted by this formula whatever
  kernel executes them (the lean FBM path computes the same operator with GEMMs);
- ``adaptive_avg_pool2d`` costs one FLOP per input element (mmengine's rule); reductions written as ``mean``
  (FilterNorm's statistics, FDConv's global pool) are not counted, like other element-wise work.

Per-op counts (handles below; tested against formulas written in ``tests``):

- ``mmdynconv::ddf``: 2·k² per output element (combine and apply);
- FDConv op, per sample b (the kernel W_b; once for all samples when there is no kernel attention, n = 1):
  spectral mixing numel(spectrum) + inverse rfft2 of P = Co·Ci·k² points, and per sample always the KSM local 1-D
  conv P·κ and the modulation by α_in, α_out, α_pos, α_local 4·P (as if folded into the kernel, whichever way
  the op applies α_in / α_out; key ``fdconv_kernel``); the per-sample conv
  B·Co·Ci·k²·Ho·Wo (key ``fdconv_conv``);
- FBM (``frequency_band_mix``), per image and channel of an H×W input with M bands: one rfft2 and M inverse
  rfft2 of H·W points, and M·H·W band modulations;
- ``mmdynconv::kernel_mixture_conv`` (CondConv, DY-Conv, ODConv), per sample with P = Co·Ci/g·k² kernel entries
  and E experts: the mixture E·P and one product per attention present, P each (key ``kernel_mixture``); the
  per-sample conv P·Ho·Wo (``kernel_mixture_conv``);
- ``mmdynconv::carafe`` (``carafe_torch``): k² per output element; ``dysample``'s ``grid_sample`` is mmengine's
  4 per output element.

The KSM global branch (linear, BatchNorm, heads), the local branch's LayerNorm and FBM's 3×3 attention conv are
ordinary aten ops that mmengine counts itself.
"""
import math
from collections import Counter
from math import prod
from typing import List

import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape

from ..ops.compat import CUSTOM_OP_REASON, HAS_CUSTOM_OP, custom_op


def fft_flops(n):
    """FLOPs of a real FFT (or its inverse) of ``n`` points: 2.5·n·log2(n)."""
    return 2.5 * n * math.log2(n) if n > 1 else 0.0


def ddf_flop_jit(inputs, outputs):
    """``mmdynconv::ddf``: x (B, C, H, W), channel_filter (B, C, k, k), ... -> (B, C, Ho, Wo)."""
    k2 = prod(get_shape(inputs[1])[2:])
    return 2 * k2 * prod(get_shape(outputs[0]))


def _float_shapes(inputs):
    shapes = []
    for value in inputs:
        shape = get_shape(value)
        if shape is not None and value.type().scalarType() in ('Float', 'Double', 'Half', 'BFloat16'):
            shapes.append(shape)
    return shapes


def fdconv_flop_jit(inputs, outputs):
    """FDConv op (``x, spectrum, ..., local_weight (Co·k², 1, κ), ...`` -> (B, Co, Ho, Wo)); inputs are recognised
    by shape, so the handle does not depend on the argument order."""
    shapes = _float_shapes(inputs)
    x, out = shapes[0], get_shape(outputs[0])
    b, ci = x[:2]
    co, ho, wo = out[1:]
    spectrum = next(s for s in shapes if len(s) == 3 and s[-1] == 2 and s[0] % co == 0)
    local = next(s for s in shapes if len(s) == 3 and s[1] == 1 and s[-1] % 2 == 1 and s[0] % co == 0)
    k = spectrum[0] // co
    p = co * ci * k * k
    per_sample_vectors = sum(1 for s in shapes if len(s) == 2 and s[0] == b)
    has_kernel_att = per_sample_vectors > 3 + (k > 1)  # local_feat, in_att, out_att (+ pos_att) (+ kernel_att)
    assembly = prod(spectrum) + fft_flops(p)
    kernel = (b if has_kernel_att else 1) * assembly + b * (p * local[-1] + 4 * p)
    return Counter({'fdconv_kernel': int(kernel), 'fdconv_conv': b * p * ho * wo})


def frequency_band_mix_flop_jit(inputs, outputs):
    """FBM: x (B, C, H, W), attention (B, M, H, W) -> (B, C, H, W)."""
    shapes = _float_shapes(inputs)
    b, c, h, w = shapes[0]
    m = shapes[1][1]
    return Counter({'frequency_band_mix': int(b * c * ((1 + m) * fft_flops(h * w) + m * h * w))})


def kernel_mixture_flop_jit(inputs, outputs):
    """``mmdynconv::kernel_mixture_conv``: x, weight (E, Co, Ci/g, kh, kw), routing (B, E), spatial_att, in_att,
    out_att (each optional), ... -> (B, Co, Ho, Wo)."""
    weight, out = get_shape(inputs[1]), get_shape(outputs[0])
    b, p = out[0], prod(weight[1:])
    attentions = sum(get_shape(v) is not None for v in inputs[3:6])
    return Counter({'kernel_mixture': b * p * (weight[0] + attentions), 'kernel_mixture_conv': b * p * prod(out[2:])})


def carafe_flop_jit(inputs, outputs):
    """``mmdynconv::carafe``: features (B, C, H, W), masks, kernel_size k, ... -> (B, C, s·H, s·W): k² per output."""
    k = inputs[2].toIValue()
    return k * k * prod(get_shape(outputs[0]))


OP_HANDLES = {
    'mmdynconv::ddf': ddf_flop_jit,
    'mmdynconv::fdconv': fdconv_flop_jit,
    'mmdynconv_flops::frequency_band_mix': frequency_band_mix_flop_jit,
    'mmdynconv::kernel_mixture_conv': kernel_mixture_flop_jit,
    'mmdynconv::carafe': carafe_flop_jit,
}


def flop_analyzer(model, inputs, warnings=False):
    """A ``FlopAnalyzer`` for ``model(*inputs)`` that also counts mmdynconv's ops.

    Its ``total()`` / ``by_operator()`` trace the model with FBM routed through :func:`_opaque_band_mix`. Needs
    torch >= 2.4: the handles match mmdynconv's ops as custom-op nodes of the trace.
    """
    if not HAS_CUSTOM_OP:
        raise RuntimeError(f'flop_analyzer: counting FLOPs of mmdynconv ops needs their custom-op nodes; '
                           f'{CUSTOM_OP_REASON}')
    analyzer = _OpaqueFBMAnalyzer(model, inputs).set_op_handle(**OP_HANDLES)
    return analyzer.unsupported_ops_warnings(warnings).uncalled_modules_warnings(warnings)


@custom_op('mmdynconv_flops::frequency_band_mix', mutates_args=())
def _opaque_band_mix(x: torch.Tensor, att: torch.Tensor, cutoffs: List[float], mask_mode: str) -> torch.Tensor:
    """FBM as one opaque node for the tracer. The FBM op is an ``autograd.Function``, whose body the JIT tracer
    records as a subgraph; its per-size cached band bases then appear in two subgraphs when a model has two FBM
    layers of one size, which the tracer cannot resolve (``RuntimeError: unordered_map::at``)."""
    from ..ops.fdconv_fbm import frequency_band_mix
    return frequency_band_mix(x, att, cutoffs, mask_mode).clone()


@_opaque_band_mix.register_fake
def _(x, att, cutoffs, mask_mode):
    return torch.empty_like(x)


class _OpaqueFBMAnalyzer(FlopAnalyzer):

    def _analyze(self):
        from ..layers import frequency_band_modulation as fbm_layer
        original = fbm_layer.frequency_band_mix
        fbm_layer.frequency_band_mix = lambda x, att, cutoffs, mask_mode: _opaque_band_mix(x, att, list(cutoffs),
                                                                                             mask_mode)
        try:
            return super()._analyze()
        finally:
            fbm_layer.frequency_band_mix = original


def build_model(cfg):
    """The model of an mmdet / mmseg config, built in its default scope, in eval mode."""
    from mmengine.registry import MODELS, DefaultScope, init_default_scope
    init_default_scope(cfg.default_scope)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return MODELS.build(cfg.model).eval()


def _data_samples(cfg, h, w):
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w),
                scale_factor=(1.0, 1.0))
    if cfg.default_scope == 'mmseg':
        from mmseg.structures import SegDataSample
        return [SegDataSample(metainfo=meta)]
    from mmdet.structures import DetDataSample
    return [DetDataSample(metainfo=meta)]


PROPOSALS = 1000


def _two_stage_forward(model, inputs, samples):
    """Tensor-mode forward of a two-stage detector with :data:`PROPOSALS` fixed, deterministic proposals."""
    from mmengine.structures import InstanceData
    x = model.extract_feat(inputs)
    h, w = inputs.shape[-2:]
    gen = torch.Generator().manual_seed(0)
    corner = torch.rand(PROPOSALS, 2, generator=gen) * torch.tensor([w * 0.75, h * 0.75])
    size = (torch.rand(PROPOSALS, 2, generator=gen) * 0.25 + 0.02) * torch.tensor([w, h])
    proposals = InstanceData(bboxes=torch.cat([corner, corner + size], 1))
    return model.rpn_head(x), model.roi_head.forward(x, [proposals], samples)


def model_complexity(cfg, h, w, part=None):
    """(params, flops, flops by operator) of a config's whole model (tensor-mode forward on one random h×w image,
    ``part=None``) or of ``model.<part>`` (e.g. 'backbone') applied to the image.

    A two-stage detector runs backbone, neck and RPN head, then its RoI head on :data:`PROPOSALS` fixed boxes
    (mmdet's test-time ``max_per_img``): with random weights the RPN's own proposals after NMS and filtering vary
    from model to model (down to none), which would mask the differences being measured.
    """
    from mmengine.analysis import parameter_count
    model = build_model(cfg)
    x = torch.randn(1, 3, h, w)
    if part is not None:
        module = getattr(model, part)
    else:
        module, samples = model, _data_samples(cfg, h, w)
        if getattr(model, 'rpn_head', None) is not None and hasattr(model, 'roi_head'):
            module.forward = lambda inputs: _two_stage_forward(model, inputs, samples)
        else:
            tensor_forward = model._forward
            module.forward = lambda inputs: tensor_forward(inputs, samples)  # mmdet/mmseg 'tensor' mode
    with torch.no_grad():
        analyzer = flop_analyzer(module, (x,))
        flops = analyzer.total()
    return parameter_count(module)[''], flops, analyzer.by_operator()


OUR_OPS = ('ddf', 'fdconv_kernel', 'fdconv_conv', 'frequency_band_mix', 'kernel_mixture', 'kernel_mixture_conv',
           'carafe')

DET = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
ODCONV = 'configs/baselines/faster-rcnn_r50-odconv4x_fpn_1x_coco.py'
CONDCONV = 'configs/baselines/faster-rcnn_r50-condconv8x_fpn_1x_coco.py'
DDF_UP = 'configs/ddf/faster-rcnn_r50_ddf-up-fpn_1x_coco.py'
FDCONV = 'configs/fdconv/faster-rcnn_r50-fdconv_fpn_1x_coco.py'
# A config with one change: (base config, the overriding config text).
DYCONV = (ODCONV, "model = dict(backbone=dict(block_conv_cfg=dict(_delete_=True, type='DYConv', num_kernels=4)))")
CARAFE = (DDF_UP, "model = dict(neck=dict(upsample_cfg=dict(_delete_=True, type='carafe_torch', up_kernel=5, "
                  "compressed_channels=64)))")
DYSAMPLE = (DDF_UP, "model = dict(neck=dict(upsample_cfg=dict(_delete_=True, type='dysample', groups=4)))")
R50, R50_DET, FRCNN = 'ResNet-50 backbone (mmdet, no fc)', 'ResNet-50 backbone at the detection input', \
    'Faster R-CNN R50-FPN (nearest)'
# (label, config (see _load_config), part, input h, w, baseline label, published)
COMPARISON = (
    (R50, DET, 'backbone', 224, 224, None, '—'),
    ('DDF-ResNet-50 backbone (mul)', 'configs/ddf/faster-rcnn_ddf-r50_fpn_1x_coco.py', 'backbone', 224, 224, R50,
     'DDF paper: 16.8 M with the 2.05 M classifier, ≈2.3 GFLOPs'),
    ('FDConv-ResNet-50 backbone', FDCONV, 'backbone', 224, 224, R50,
     'FDConv paper: +3.6 M params'),
    ('CondConv-ResNet-50 (8×) backbone', CONDCONV, 'backbone', 224, 224, R50, '—'),
    ('DY-Conv-ResNet-50 (4×) backbone', DYCONV, 'backbone', 224, 224, R50, '—'),
    ('ODConv-ResNet-50 (4×) backbone', ODCONV, 'backbone', 224, 224, R50, '—'),
    (R50_DET, DET, 'backbone', 800, 1216, None, '—'),
    ('FDConv-ResNet-50 backbone at the detection input', FDCONV,
     'backbone', 800, 1216, R50_DET, '—'),
    (FRCNN, DET, None, 800, 1216, None, 'FDConv paper: 37.2 box AP'),
    ('Faster R-CNN R50-FPN (DDF-Up)', DDF_UP, None, 800, 1216, FRCNN, '—'),
    ('Faster R-CNN R50-FPN (CARAFE, carafe_torch)', CARAFE, None, 800, 1216, FRCNN,
     'mmdet model zoo (published): 38.6 box AP, against 37.4 for nearest'),
    ('Faster R-CNN R50-FPN (DySample, lp, 4 groups)', DYSAMPLE, None, 800, 1216, FRCNN, '—'),
    ('Faster R-CNN FDConv-R50-FPN', FDCONV, None, 800, 1216, FRCNN,
     'FDConv paper (published): +3.6 M params, +1.8 GFLOPs, 39.4 box AP'),
    ('Faster R-CNN CondConv-R50 (8×)-FPN', CONDCONV, None, 800, 1216, FRCNN, '—'),
    ('Faster R-CNN ODConv-R50 (4×)-FPN', ODCONV, None, 800, 1216, FRCNN,
     'ODConv repository (published): 108.91 M params, 39.4 box AP, against 37.4'),
)


def _load_config(config, root):
    """An ``mmdet::`` config, a config path relative to ``root``, or (base path, overriding config text)."""
    import os.path as osp

    from mmengine.config import Config
    if isinstance(config, tuple):
        base, text = config
        return Config.fromstring(f'_base_ = {osp.join(root, base)!r}\n{text}\n', '.py')
    if config.startswith('mmdet::'):
        return Config.fromstring(f'_base_ = {config!r}', '.py')
    return Config.fromfile(osp.join(root, config))


def comparison_table(root):
    """Markdown table of :data:`COMPARISON` (configs under ``root``): params, GFLOPs, deltas to the baseline row
    (``—`` in a baseline row), the part counted by mmdynconv's handles, and the published figure where there is one
    (``—`` where none is quoted)."""
    header = ('| model | input | params (M) | GFLOPs | Δ params (M) | Δ GFLOPs | of which mmdynconv ops (GFLOPs) '
              '| published |')
    measured, changes, lines = {}, [], [header, '|---|---|---|---|---|---|---|---|']
    for label, config, part, h, w, base, published in COMPARISON:
        params, flops, ops = model_complexity(_load_config(config, root), h, w, part)
        measured[label] = params, flops, ops
        ours = sum(ops.get(name, 0) for name in OUR_OPS)
        delta = ('—', '—') if base is None else (f'{(params - measured[base][0]) / 1e6:+.2f}',
                                                 f'{(flops - measured[base][1]) / 1e9:+.2f}')
        lines.append(f'| {label} | {h}×{w} | {params / 1e6:.2f} | {flops / 1e9:.2f} | {delta[0]} | {delta[1]} | '
                     f'{ours / 1e9:.2f} | {published} |')
        print(lines[-1], flush=True)
        if base is not None:
            changes.append(f'- {label} − {base}: ' + _operator_deltas(ops, measured[base][2]))
    return '\n'.join(lines) + '\n\nΔ GFLOPs by operator (the table\'s rows against their baselines):\n\n' + '\n'.join(
        changes)


def _operator_deltas(ops, base_ops):
    deltas = {name: (ops.get(name, 0) - base_ops.get(name, 0)) / 1e9 for name in {**base_ops, **ops}}
    return ', '.join(f'{name} {d:+.2f}' for name, d in sorted(deltas.items(), key=lambda kv: -abs(kv[1]))
                     if abs(d) >= 0.005)


def complexity_page(table, command):
    """docs/complexity.md: the conventions, the command and the table."""
    conventions = __doc__.split('\n\n', 1)[1].strip()
    return (f'# FLOPs and parameters\n\nGenerated by `{command}` (torch {torch.__version__}, CPU); do not edit by '
            f'hand. Random input, one image, eval mode, tensor-mode forward (no post-processing); the RoI head of '
            f'Faster R-CNN runs on {PROPOSALS} fixed proposals. Δ columns are against the plain row of the same '
            f'input size. "published" figures are quoted from the papers, not '
            f'measured here.\n\n{table}\n\n## How it counts\n\n{conventions}\n')
