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
import torch
from mmengine.analysis import FlopAnalyzer

from ..layers.declarations import FLOP_HANDLES
from ..layers.fdconv_flops import fft_flops  # noqa: F401  (re-exported: the FFT cost convention)
from ..ops.compat import CUSTOM_OP_REASON, HAS_CUSTOM_OP

__all__ = ['OUR_OPS', 'flop_analyzer', 'build_model', 'PROPOSALS', 'model_complexity']

OP_HANDLES = {op: handle.fn for op, handle in FLOP_HANDLES.items()}
"""{custom op: FLOP handle}, from the layer declarations (:mod:`mmdynconv.layers.declarations`)."""
OUR_OPS = tuple(key for handle in FLOP_HANDLES.values() for key in handle.keys)
"""The ``by_operator()`` keys counted by mmdynconv's handles."""


def flop_analyzer(model, inputs, warnings=False):
    """A ``FlopAnalyzer`` for ``model(*inputs)`` that also counts mmdynconv's ops.

    Needs torch >= 2.4: the handles match mmdynconv's ops as custom-op nodes of the trace.
    """
    if not HAS_CUSTOM_OP:
        raise RuntimeError(f'flop_analyzer: counting FLOPs of mmdynconv ops needs their custom-op nodes; '
                           f'{CUSTOM_OP_REASON}')
    analyzer = FlopAnalyzer(model, inputs).set_op_handle(**OP_HANDLES)
    return analyzer.unsupported_ops_warnings(warnings).uncalled_modules_warnings(warnings)


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
