"""``export_config``: the logic of ``tools/deploy/export_onnx.py``."""
import torch

from .export import export_onnx, parity
from .tensor_forward import TensorForward, build_model, default_input_shape

__all__ = ['example_inputs', 'export_config']


def example_inputs(wrapper, cfg, shape=None, batch=1, seed=0):
    """Random inputs of the exported graph's static shape: one image (B, 3, H, W), or (depth_lr, rgb) for depth."""
    gen = torch.Generator().manual_seed(seed)
    if wrapper.kind == 'depth':
        s = wrapper.model.scale_factor
        h, w = shape or (64, 64)
        if h % s or w % s:
            raise ValueError(f'export: the depth model upsamples x{s}; --shape must be divisible by {s}, got {(h, w)}')
        return (1 + 3 * torch.rand(batch, 1, h // s, w // s, generator=gen), torch.rand(batch, 3, h, w, generator=gen))
    shape = shape or default_input_shape(cfg)
    if shape is None:
        raise ValueError('export: the config has no fixed test Resize scale; pass --shape H W')
    return (torch.randn(batch, 3, *shape, generator=gen),)


def export_config(config, checkpoint, out, shape=None, batch=1, opset=18, check=True, optimize=False):
    """Build ``config`` with ``checkpoint``, export its tensor forward to ``out``; returns a report dict (inputs,
    outputs, ONNX op types, and with ``check`` the ONNX Runtime vs PyTorch differences)."""
    model, cfg = build_model(config, checkpoint)
    wrapper = TensorForward(model).eval()
    inputs = example_inputs(wrapper, cfg, shape, batch)
    with torch.no_grad():
        n_out = len(wrapper(*inputs))
    ops = export_onnx(wrapper, inputs, out, wrapper.input_names(), wrapper.output_names(n_out), opset, optimize)
    report = dict(onnx=out, kind=wrapper.kind, inputs=[tuple(t.shape) for t in inputs], outputs=n_out,
                  onnx_ops=' '.join(ops))
    if check:
        report.update(parity(wrapper, out, inputs))
    return report
