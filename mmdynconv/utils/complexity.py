"""FLOP counting that sees mmdynconv's ops: mmengine's ``FlopAnalyzer`` plus handles for our custom ops.

Convention (mmengine / fvcore): one multiply-accumulate counts as one FLOP; element-wise ops (FilterNorm's
standardisation, activations) are not counted.
"""
from math import prod

from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape


def ddf_flop_jit(inputs, outputs):
    """``mmdynconv::ddf``: per output element, k² kernel combinations (fs·fc or fs+fc) and k² multiply-adds.

    inputs: x (B, C, H, W), channel_filter (B, C, k, k), spatial_filter, ... ; output (B, C, Ho, Wo).
    """
    k2 = prod(get_shape(inputs[1])[2:])
    return 2 * k2 * prod(get_shape(outputs[0]))


OP_HANDLES = {'mmdynconv::ddf': ddf_flop_jit}


def flop_analyzer(model, inputs, warnings=False):
    """A ``FlopAnalyzer`` for ``model(*inputs)`` that also counts mmdynconv's custom ops."""
    analyzer = FlopAnalyzer(model, inputs).set_op_handle(**OP_HANDLES)
    return analyzer.unsupported_ops_warnings(warnings).uncalled_modules_warnings(warnings)
