"""Every registered layer's integration, declared in one table: what the FLOP counter, the benchmarks, ONNX export,
the config variants of the comparison, the temperature hook and the tests need to know about a layer.

Adding a layer means its module (registered in mmengine's ``MODELS``), its import in ``mmdynconv/layers/__init__.py``
and one :class:`LayerDeclaration` in :data:`DECLARATIONS` (plus a :class:`FlopHandle` in :data:`FLOP_HANDLES` when it
brings a new custom op). ``tests/layers/test_declarations.py`` walks the registry and fails, naming the layer, when a
registered layer has no declaration or a declaration is incomplete or wrong.
"""
from collections import Counter
from dataclasses import dataclass, field
from math import prod
from typing import Callable, Dict, Optional, Tuple

from .fdconv_flops import fdconv_flops, frequency_band_mix_flops

__all__ = ['PLACEMENTS', 'EXPORT_RULES', 'DYNAMIC_RESNETS', 'Variant', 'FlopHandle', 'LayerDeclaration', 'FLOP_HANDLES',
           'DECLARATIONS', 'ddf_flops', 'kernel_mixture_flops', 'carafe_flops', 'sapa_flops', 'declaration',
           'declared_with', 'layers_with_hook']

PLACEMENTS = ('block_convs', 'dcn_slot', 'fpn_upsampler')
EXPORT_RULES = ('aten', 'decompose', 'oracle')
DYNAMIC_RESNETS = dict(ResNet='DynamicConvResNet', ResNetV1d='DynamicConvResNet', ResNetV1c='DynamicConvResNetV1c')


@dataclass(frozen=True)
class Variant:
    """A layer's comparison variant: the one change that turns a plain mmdet / mmseg model config into the layer's.

    ``name``: as given to ``tools/compare_layers.py --variants``; ``placement``: ``'block_convs'`` (every residual-block
    conv of a ResNet: conv1-3 of a Bottleneck, conv1-2 of a BasicBlock), ``'dcn_slot'`` (conv2 of every Bottleneck,
    through the ResNet's ``dcn`` argument) or ``'fpn_upsampler'`` (the FPN's top-down ×2 upsampling, by
    ``UpsamplerFPN``); ``cfg``: the layer's config in that place; ``description``: one line for tables.
    ``block_convs`` only: ``backbones`` maps the plain ResNet type to the variant's backbone type, ``cfg_key`` names
    the backbone argument that takes ``cfg``. ``hooks``: hook configs the comparison adds to the variant's runs (its
    schedule, e.g. KernelWarehouse's temperature annealing; a hook type the user's config has is left as it is).
    """
    name: str
    placement: str
    cfg: dict
    description: str
    backbones: Dict[str, str] = field(default_factory=lambda: dict(DYNAMIC_RESNETS))
    cfg_key: str = 'block_conv_cfg'
    hooks: Tuple[dict, ...] = ()


@dataclass(frozen=True)
class FlopHandle:
    """The FLOP count of one custom op for mmengine's ``FlopAnalyzer``: ``fn(inputs, outputs)`` (JIT values) returns
    a ``Counter`` over ``keys`` (the operator names ``by_operator()`` reports)."""
    fn: Callable
    keys: Tuple[str, ...]


@dataclass(frozen=True)
class LayerDeclaration:
    """One registered layer.

    Args:
        name: its type in ``MODELS`` (what configs name).
        kind: ``'conv'`` (built like ``build_conv_layer``: in_channels, out_channels, kernel_size, stride, padding,
            ...) or ``'upsampler'`` (like ``build_upsample_layer``: channels, scale_factor).
        small: arguments beyond the builder's for a small, fast instance (tests, ``--shapes small``).
        ops: the custom ops (``'mmdynconv::<op>'``) its forward runs; each needs a :data:`FLOP_HANDLES` entry.
        benchmark: the ``tools/benchmark.py`` set that measures it: ``'convs'`` / ``'ddf_up'`` list every layer
            declared with them beside the plain layer (built from ``MODELS`` with ``benchmark_args``); ``'ddf'``
            measures the DDF op.
        export: how ``mmdynconv.deploy`` exports it to ONNX: ``'aten'`` (only standard ops), ``'decompose'`` (its
            custom ops are replaced by their functional forms), ``'oracle'`` (its traceable pure-PyTorch
            formulation); anything else is the reason it cannot be exported.
        plain_conv: how a plain conv's state dict (``weight``, ``bias``) initialises it: ``'converts'`` (it loads
            them, documented on the layer), anything else the reason it does not.
        variant: its comparison :class:`Variant`.
        hooks: the hook types its training schedule uses (``TemperatureAnnealHook`` sets ``temperature`` on
            every layer that lists it).
        float32_inside: tolerance for layers that compute parts in float32 also for float64 inputs (conformance).
        autocast_xfail: {dtype name: reason} of autocast cases known to fail (strict xfail in the conformance suite).
        published: published figures quoted beside it in docs/complexity.md: ``backbone`` (its ResNet-50 backbone
            row), ``model`` (its Faster R-CNN R50-FPN row).
    """
    name: str
    kind: str
    variant: Optional[Variant]
    small: dict = field(default_factory=dict)
    ops: Tuple[str, ...] = ()
    benchmark: str = ''
    benchmark_args: dict = field(default_factory=dict)
    export: str = 'aten'
    plain_conv: str = ''
    hooks: Tuple[str, ...] = ()
    float32_inside: Optional[float] = None
    autocast_xfail: Dict[str, str] = field(default_factory=dict)
    published: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in ('conv', 'upsampler'):
            raise ValueError(f"LayerDeclaration {self.name!r}: kind must be 'conv' or 'upsampler', got {self.kind!r}")
        if self.variant is not None and self.variant.placement not in PLACEMENTS:
            raise ValueError(f'LayerDeclaration {self.name!r}: variant.placement must be one of {PLACEMENTS}, got '
                             f'{self.variant.placement!r}')


def _shape(value):
    """The sizes of a JIT tensor value (None when unknown or not a tensor)."""
    return value.type().sizes() if value.isCompleteTensor() else None


def ddf_flops(inputs, outputs):
    """``mmdynconv::ddf``: x (B, C, H, W), channel_filter (B, C, k, k), ... -> (B, C, Ho, Wo): 2·k² per output
    element (combine and apply)."""
    return Counter({'ddf': 2 * prod(_shape(inputs[1])[2:]) * prod(_shape(outputs[0]))})


def kernel_mixture_flops(inputs, outputs):
    """``mmdynconv::kernel_mixture_conv``: x, weight (E, Co, Ci/g, kh, kw), routing (B, E), spatial_att, in_att,
    out_att (each optional), ... -> (B, Co, Ho, Wo): per sample the mixture E·P and one product per attention present
    (P = Co·Ci/g·k² each), and the conv P·Ho·Wo."""
    weight, out = _shape(inputs[1]), _shape(outputs[0])
    b, p = out[0], prod(weight[1:])
    attentions = sum(_shape(v) is not None for v in inputs[3:6])
    return Counter({'kernel_mixture': b * p * (weight[0] + attentions), 'kernel_mixture_conv': b * p * prod(out[2:])})


def carafe_flops(inputs, outputs):
    """``mmdynconv::carafe``: features (B, C, H, W), masks, kernel_size k, ... -> (B, C, s·H, s·W): k² per output."""
    k = inputs[2].toIValue()
    return Counter({'carafe': k * k * prod(_shape(outputs[0]))})


def sapa_flops(inputs, outputs):
    """``mmdynconv::sapa``: query (B, D, s·H, s·W), key, value, kernel_size k, ... -> (B, C, s·H, s·W): k² per query
    element (similarities) and per output element (reassembly)."""
    k = inputs[3].toIValue()
    return Counter({'sapa': k * k * (prod(_shape(inputs[0])) + prod(_shape(outputs[0])))})


FLOP_HANDLES: Dict[str, FlopHandle] = {
    'mmdynconv::ddf': FlopHandle(ddf_flops, ('ddf',)),
    'mmdynconv::fdconv': FlopHandle(fdconv_flops, ('fdconv_kernel', 'fdconv_conv')),
    'mmdynconv::frequency_band_mix': FlopHandle(frequency_band_mix_flops, ('frequency_band_mix',)),
    'mmdynconv::kernel_mixture_conv': FlopHandle(kernel_mixture_flops, ('kernel_mixture', 'kernel_mixture_conv')),
    'mmdynconv::carafe': FlopHandle(carafe_flops, ('carafe',)),
    'mmdynconv::sapa': FlopHandle(sapa_flops, ('sapa',)),
}

_MIXTURE = dict(ops=('mmdynconv::kernel_mixture_conv',), benchmark='convs', export='decompose',
                plain_conv='converts', small=dict())
_FPN_UP = dict(benchmark='ddf_up', plain_conv='none: it replaces a parameter-free upsampler')

DECLARATIONS: Dict[str, LayerDeclaration] = {d.name: d for d in (
    LayerDeclaration(
        'FDConv', 'conv', Variant('FDConv', 'block_convs', dict(type='FDConv', kernel_num=64),
                                  'FDConv (kernel_num 64, FBM in 3x3 convs) in every residual-block conv',
                                  backbones=dict(ResNet='FDConvResNet', ResNetV1d='FDConvResNet',
                                                 ResNetV1c='FDConvResNetV1c'), cfg_key='fdconv_cfg'),
        small=dict(kernel_num=4), ops=('mmdynconv::fdconv', 'mmdynconv::frequency_band_mix'),
        benchmark='convs', export='oracle', plain_conv='converts', float32_inside=1e-5,
        published=dict(backbone='FDConv paper: +3.6 M params',
                       model='FDConv paper (published): +3.6 M params, +1.8 GFLOPs, 39.4 box AP')),
    LayerDeclaration(
        'ODConv', 'conv', Variant('ODConv', 'block_convs', dict(type='ODConv', kernel_num=4, reduction=0.0625,
                                                                min_channels=16),
                                  'ODConv (4 kernels, reduction 1/16) in every residual-block conv'),
        hooks=('TemperatureAnnealHook',),
        published=dict(model='ODConv repository (published): 108.91 M params, 39.4 box AP, against 37.4'),
        **_MIXTURE),
    LayerDeclaration(
        'CondConv', 'conv', Variant('CondConv', 'block_convs', dict(type='CondConv', num_experts=8),
                                    'CondConv (8 experts) in every residual-block conv'), **_MIXTURE),
    LayerDeclaration(
        'DYConv', 'conv', Variant('DY-Conv', 'block_convs', dict(type='DYConv', num_kernels=4),
                                  'DY-Conv (4 kernels, temperature 1) in every residual-block conv'),
        hooks=('TemperatureAnnealHook',), **_MIXTURE),
    LayerDeclaration(
        'DCD', 'conv', Variant('DCD', 'block_convs', dict(type='DCD'),
                               'DCD (latent dim ⌊√Ci⌋, fc_squeeze 16) in every residual-block conv, as the release'),
        benchmark='convs', export='aten', plain_conv='converts'),
    LayerDeclaration(
        'KernelWarehouse', 'conv',
        Variant('KernelWarehouse', 'block_convs', dict(type='KernelWarehouse', cell_num_ratio=1),
                'KernelWarehouse (1x, one warehouse per stage, the release placement) in the residual-block convs, '
                'temperature 1 -> 0 over the first epoch',
                backbones=dict(ResNet='KWResNet', ResNetV1d='KWResNet', ResNetV1c='KWResNetV1c'), cfg_key='kw_cfg',
                hooks=(dict(type='TemperatureAnnealHook', start=1.0, end=0.0, anneal=1),)),
        benchmark='convs', export='aten', plain_conv='converts', hooks=('TemperatureAnnealHook',)),
    LayerDeclaration(
        'DDF', 'conv', Variant('DDF', 'dcn_slot', dict(type='DDF', kernel_combine='mul', fallback_on_stride=False),
                               "DDF ('mul') as conv2 of every bottleneck (the dcn slot)"),
        ops=('mmdynconv::ddf',), benchmark='ddf', export='decompose',
        plain_conv='none: its filters are generated from the input (a plain checkpoint leaves them at their '
                   'initialisation, reported as missing keys)',
        published=dict(backbone='DDF paper: 16.8 M with the 2.05 M classifier, ≈2.3 GFLOPs')),
    LayerDeclaration(
        'ddf_up', 'upsampler', Variant('DDF-Up', 'fpn_upsampler', dict(type='ddf_up', kernel_size=3),
                                       'DDF-Up (k 3) as the FPN top-down x2 upsampler'),
        ops=('mmdynconv::ddf',), export='decompose',
        autocast_xfail={'float16': 'DDF FilterNorm divides by (std + 1e-10): a constant generated filter (here a '
                                   'pair of channel branches whose squeezed features ReLU zeroes, at '
                                   'initialisation) has gradients ~1e10, which overflow float16'}, **_FPN_UP),
    LayerDeclaration(
        'carafe_torch', 'upsampler',
        Variant('CARAFE', 'fpn_upsampler', dict(type='carafe_torch', up_kernel=5, up_group=1, encoder_kernel=3,
                                                compressed_channels=64),
                'CARAFE (k_up 5, pure PyTorch) as the FPN top-down x2 upsampler'),
        small=dict(compressed_channels=16), ops=('mmdynconv::carafe',), export='decompose',
        published=dict(model='mmdet model zoo (published): 38.6 box AP, against 37.4 for nearest'),
        **_FPN_UP),
    LayerDeclaration(
        'dysample', 'upsampler', Variant('DySample', 'fpn_upsampler', dict(type='dysample', groups=4),
                                         'DySample (4 groups) as the FPN top-down x2 upsampler'), **_FPN_UP),
    LayerDeclaration(
        'fade', 'upsampler',
        Variant('FADE', 'fpn_upsampler', dict(type='fade', up_kernel=5, gating=True),
                'FADE (k_up 5, gated, guided by the lateral) as the FPN top-down x2 upsampler'),
        small=dict(compressed_channels=16), ops=('mmdynconv::carafe',), export='decompose', **_FPN_UP),
    LayerDeclaration(
        'sapa', 'upsampler',
        Variant('SAPA', 'fpn_upsampler', dict(type='sapa', up_kernel=5, embedding_dim=32, query_mode='encoder'),
                'SAPA-B (k_up 5, embedding 32 as the release logs, guided by the lateral) as the FPN top-down x2 '
                'upsampler'),
        small=dict(embedding_dim=8), ops=('mmdynconv::sapa',), export='decompose', **_FPN_UP),
)}


def declaration(name):
    """The declaration of the layer registered as ``name``; ``KeyError`` naming the declared layers otherwise."""
    try:
        return DECLARATIONS[name]
    except KeyError:
        raise KeyError(f'no layer declaration for {name!r}; declared: {", ".join(DECLARATIONS)} (add one to '
                       f'mmdynconv/layers/declarations.py)') from None


def declared_with(**match):
    """The declarations whose fields equal ``match`` (e.g. ``kind='conv'``), in table order."""
    return [d for d in DECLARATIONS.values() if all(getattr(d, k) == v for k, v in match.items())]


def layers_with_hook(hook):
    """Registry names of the layers whose schedule uses ``hook``."""
    return [d.name for d in DECLARATIONS.values() if hook in d.hooks]
