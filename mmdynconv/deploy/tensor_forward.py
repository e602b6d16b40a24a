"""What gets exported from a config: the network's tensor forward, without data-dependent post-processing.

As mmdet / mmseg's own ``mode='tensor'`` paths (and mmdeploy) draw the line:

- mmseg ``EncoderDecoder``: the decode head's logits (B, K, H/4, W/4) (resizing and argmax are post-processing);
- mmdet two-stage detectors (Faster / Mask R-CNN): the FPN features and the RPN head's per-level class scores and
  box deltas. Proposal NMS, RoI extraction and the RoI heads depend on the NMS result and stay on the host (an
  NMS-free graph cannot contain them);
- mmdet single-stage detectors: the head's per-level outputs (``model._forward``), no NMS;
- ``GuidedDepthUpsampler``: the predicted depth, from inputs (depth_lr, rgb).

The image input is the data preprocessor's output (mean/std-normalised, channel order as the config says); the
preprocessing itself is not part of the graph.
"""
import torch.utils._pytree as pytree
from torch import nn

__all__ = ['TensorForward', 'build_model', 'default_input_shape']


def _kind(model):
    if hasattr(model, 'predict_depth'):
        return 'depth'
    if hasattr(model, 'decode_head'):
        return 'segmentor'
    if getattr(model, 'rpn_head', None) is not None:
        return 'two_stage'
    if hasattr(model, 'bbox_head'):
        return 'single_stage'
    raise TypeError(f'TensorForward: {type(model).__name__} is not an mmseg segmentor, an mmdet detector or a '
                    f'GuidedDepthUpsampler')


class TensorForward(nn.Module):
    """Wrap a built mmdet / mmseg / depth model: ``forward(*inputs)`` → flat tuple of tensors (see module doc)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.kind = _kind(model)

    def output_names(self, num_outputs):
        """ONNX output names for ``num_outputs`` flat outputs."""
        if self.kind == 'segmentor':
            return ['seg_logits'] if num_outputs == 1 else [f'seg_logits{i}' for i in range(num_outputs)]
        if self.kind == 'depth':
            return ['depth']
        if self.kind == 'two_stage':
            levels = num_outputs // 3
            return ([f'feat{i}' for i in range(levels)] + [f'rpn_cls{i}' for i in range(levels)]
                    + [f'rpn_bbox{i}' for i in range(levels)])
        return [f'out{i}' for i in range(num_outputs)]

    def input_names(self):
        return ['depth_lr', 'rgb'] if self.kind == 'depth' else ['image']

    def forward(self, *inputs):
        m = self.model
        if self.kind == 'depth':
            return (m.predict_depth(*inputs),)
        (image,) = inputs
        if self.kind == 'segmentor':
            return tuple(pytree.tree_leaves(m._forward(image)))
        if self.kind == 'two_stage':
            feats = m.extract_feat(image)
            scores, deltas = m.rpn_head(feats)
            return (*feats, *scores, *deltas)
        return tuple(pytree.tree_leaves(m._forward(image)))


def build_model(config, checkpoint=None):
    """Build the model of an mmengine config (plugin imports and default scope as the tools do) in eval mode and
    load ``checkpoint`` (a Runner checkpoint or a plain state dict) when given. Returns (model, cfg)."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import load_checkpoint

    from ..utils import allow_runner_checkpoints

    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        allow_runner_checkpoints()
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    return model.eval(), cfg


def default_input_shape(cfg):
    """(H, W) of the test pipeline's fixed ``Resize`` (mmcv's scale is (W, H)), or None when it has none."""
    pipeline = (cfg.get('test_dataloader') or {}).get('dataset', {}).get('pipeline') or cfg.get('test_pipeline') or []
    for step in pipeline:
        if step.get('type') == 'Resize' and isinstance(step.get('scale'), (tuple, list)):
            w, h = step['scale']
            return int(h), int(w)
    return None
