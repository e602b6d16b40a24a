"""Config variants: each layer's one-change rule that turns a plain mmdet / mmseg model config into the layer's variant.

A variant is declared here, next to the backbones and neck that implement it, with :func:`config_variant`; the
comparison runner (``tools/compare_layers.py --config``) discovers them through :data:`CONFIG_VARIANTS`. A transform
takes the model config (a plain dict) and the task's registry scope (``'mmdet'`` / ``'mmseg'``) and returns the new
model config; it changes only the part it names and leaves everything else (pretrained ``init_cfg``, ``frozen_stages``,
``norm_eval``, heads, data preprocessor) as it was. A model it cannot transform raises :class:`VariantNotApplicable`,
naming the variant and the config part it needs, before anything is built.

Backbone variants take mmdet's ``ResNet`` / ``ResNetV1d`` or mmseg's ``ResNetV1c`` of any depth and place the layer
where its paper does: conv1-3 of every Bottleneck (conv1-2 of every BasicBlock) for FDConv, CondConv, DY-Conv and
ODConv (stem and shortcut projections stay plain); conv2 of every Bottleneck for DDF (the ``dcn`` slot; no BasicBlock
placement exists). Neck variants replace mmdet's / mmseg's ``FPN`` by :class:`~.necks.UpsamplerFPN` with the
layer as the top-down ×2 upsampler; everything else about the FPN is kept (mmseg's exclusive ``end_level`` and
``extra_convs_on_inputs`` are translated).
"""
import copy
from dataclasses import dataclass
from typing import Callable, Dict

BASIC_DEPTHS = (18, 34)
BOTTLENECK_DEPTHS = (50, 101, 152)


class VariantNotApplicable(ValueError):
    """A variant cannot transform a config; the message names the variant and the config part it needs."""

    def __init__(self, variant, part, needs, found):
        self.variant, self.part = variant, part
        super().__init__(f'variant {variant!r} cannot transform this config: it needs {part} {needs}, found {found}')


@dataclass(frozen=True)
class ConfigVariant:
    """``name``: as given to ``--variants``; ``part``: ``'backbone'`` or ``'neck'``; ``layer``: a one-line
    description of the change; ``transform(model_cfg, scope) -> model_cfg``."""
    name: str
    part: str
    layer: str
    transform: Callable

    def apply(self, model_cfg, scope):
        """The variant's model config (a new dict); raises :class:`VariantNotApplicable`."""
        if scope not in ('mmdet', 'mmseg'):
            raise VariantNotApplicable(self.name, 'default_scope', "'mmdet' or 'mmseg'", repr(scope))
        return self.transform(copy.deepcopy(_plain(model_cfg)), scope)


CONFIG_VARIANTS: Dict[str, ConfigVariant] = {}


def config_variant(name, part, layer):
    """Declare ``transform(model_cfg, scope)`` as the variant ``name`` (decorator)."""
    if part not in ('backbone', 'neck'):
        raise ValueError(f"config_variant: part must be 'backbone' or 'neck', got {part!r}")

    def register(transform):
        if name in CONFIG_VARIANTS:
            raise ValueError(f'config_variant: {name!r} is declared twice')
        CONFIG_VARIANTS[name] = ConfigVariant(name, part, layer, transform)
        return transform
    return register


def _plain(cfg):
    """A ConfigDict / dict tree as plain dicts and lists."""
    if isinstance(cfg, dict):
        return {k: _plain(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(_plain(v) for v in cfg)
    return cfg


def _type_name(cfg, scope):
    """(scope, bare type name) of a module config: ``'mmdet.FPN'`` -> ('mmdet', 'FPN')."""
    kind = cfg.get('type') if isinstance(cfg, dict) else None
    if not isinstance(kind, str):
        return scope, repr(kind)
    if '.' in kind:
        prefix, bare = kind.split('.', 1)
        return prefix, bare
    return scope, kind


# --- backbones -------------------------------------------------------------------------------------------------

_RESNETS = {('mmdet', 'ResNet'), ('mmdet', 'ResNetV1d'), ('mmseg', 'ResNetV1c')}
_RESNET_NEEDS = "of type mmdet 'ResNet' / 'ResNetV1d' or mmseg 'ResNetV1c' (depth 18, 34, 50, 101 or 152)"


def _resnet(model, variant, scope, bottleneck_only=False):
    """Check ``model['backbone']`` is a plain supported ResNet; return (backbone dict, its scope, type, depth)."""
    backbone = model.get('backbone')
    if not isinstance(backbone, dict):
        raise VariantNotApplicable(variant, 'model.backbone', _RESNET_NEEDS, repr(backbone))
    kind_scope, kind = _type_name(backbone, scope)
    if (kind_scope, kind) not in _RESNETS:
        raise VariantNotApplicable(variant, 'model.backbone', _RESNET_NEEDS, f'{kind_scope} {kind!r}')
    depth = backbone.get('depth')
    if depth not in BASIC_DEPTHS + BOTTLENECK_DEPTHS:
        raise VariantNotApplicable(variant, 'model.backbone.depth', 'in (18, 34, 50, 101, 152)', repr(depth))
    if bottleneck_only and depth in BASIC_DEPTHS:
        raise VariantNotApplicable(variant, 'model.backbone.depth', 'of a Bottleneck ResNet (50, 101 or 152): '
                                   'its layer replaces the bottleneck 3x3 conv through the dcn slot, which '
                                   'BasicBlock does not have', repr(depth))
    for key in ('dcn', 'plugins'):
        if backbone.get(key):
            raise VariantNotApplicable(variant, f'model.backbone.{key}', 'None (plain convs to replace)',
                                       repr(backbone[key]))
    if backbone.get('block') is not None:
        raise VariantNotApplicable(variant, 'model.backbone.block', 'unset (the depth picks the block)',
                                   repr(backbone['block']))
    return backbone, kind_scope, kind, depth


def _block_conv_backbone(model, variant, scope, new_types, extra):
    """The backbone as ``new_types[kind]`` with ``extra`` arguments (mmdet ResNetV1d: FDConv/Dynamic ResNet with the
    V1d stem and shortcut, ``deep_stem=True, avg_down=True``)."""
    backbone, _, kind, _ = _resnet(model, variant, scope)
    new = dict(backbone, **extra)
    if kind == 'ResNetV1d':
        new.update(deep_stem=True, avg_down=True)
    new['type'] = new_types[kind]
    model['backbone'] = new
    return model


_FDCONV_TYPES = dict(ResNet='FDConvResNet', ResNetV1d='FDConvResNet', ResNetV1c='FDConvResNetV1c')
_DYNAMIC_TYPES = dict(ResNet='DynamicConvResNet', ResNetV1d='DynamicConvResNet', ResNetV1c='DynamicConvResNetV1c')


@config_variant('FDConv', 'backbone', 'FDConv (kernel_num 64, FBM in 3x3 convs) in every residual-block conv')
def fdconv_backbone(model, scope):
    return _block_conv_backbone(model, 'FDConv', scope, _FDCONV_TYPES,
                                dict(fdconv_cfg=dict(type='FDConv', kernel_num=64)))


@config_variant('ODConv', 'backbone', 'ODConv (4 kernels, reduction 1/16) in every residual-block conv')
def odconv_backbone(model, scope):
    return _block_conv_backbone(model, 'ODConv', scope, _DYNAMIC_TYPES, dict(
        block_conv_cfg=dict(type='ODConv', kernel_num=4, reduction=0.0625, min_channels=16)))


@config_variant('CondConv', 'backbone', 'CondConv (8 experts) in every residual-block conv')
def condconv_backbone(model, scope):
    return _block_conv_backbone(model, 'CondConv', scope, _DYNAMIC_TYPES,
                                dict(block_conv_cfg=dict(type='CondConv', num_experts=8)))


@config_variant('DY-Conv', 'backbone', 'DY-Conv (4 kernels, temperature 1) in every residual-block conv')
def dyconv_backbone(model, scope):
    return _block_conv_backbone(model, 'DY-Conv', scope, _DYNAMIC_TYPES,
                                dict(block_conv_cfg=dict(type='DYConv', num_kernels=4)))


@config_variant('DDF', 'backbone', "DDF ('mul') as conv2 of every bottleneck (the dcn slot)")
def ddf_backbone(model, scope):
    backbone, _, _, _ = _resnet(model, 'DDF', scope, bottleneck_only=True)
    backbone.update(dcn=dict(type='DDF', kernel_combine='mul', fallback_on_stride=False),
                    stage_with_dcn=(True,) * int(backbone.get('num_stages', 4)))
    return model


# --- necks -----------------------------------------------------------------------------------------------------

_FPN_NEEDS = "of type mmdet / mmseg 'FPN' (one neck, not a list)"


def _upsampler_fpn(model, variant, scope, upsample_cfg):
    neck = model.get('neck')
    if not isinstance(neck, dict):
        raise VariantNotApplicable(variant, 'model.neck', _FPN_NEEDS, repr(neck))
    kind_scope, kind = _type_name(neck, scope)
    if kind != 'FPN' or kind_scope not in ('mmdet', 'mmseg'):
        raise VariantNotApplicable(variant, 'model.neck', _FPN_NEEDS, f'{kind_scope} {kind!r}')
    new = dict(neck, type='UpsamplerFPN', upsample_cfg=dict(upsample_cfg))
    if kind_scope == 'mmseg':  # mmseg's FPN: end_level exclusive, add_extra_convs=True + extra_convs_on_inputs
        on_inputs = new.pop('extra_convs_on_inputs', False)
        if new.get('add_extra_convs') is True:
            new['add_extra_convs'] = 'on_input' if on_inputs else 'on_output'
        end = new.get('end_level', -1)
        if end != -1:
            new['end_level'] = -1 if end == len(new['in_channels']) else end - 1
    model['neck'] = new
    return model


@config_variant('DDF-Up', 'neck', 'DDF-Up (k 3) as the FPN top-down x2 upsampler')
def ddf_up_neck(model, scope):
    return _upsampler_fpn(model, 'DDF-Up', scope, dict(type='ddf_up', kernel_size=3))


@config_variant('CARAFE', 'neck', 'CARAFE (k_up 5, pure PyTorch) as the FPN top-down x2 upsampler')
def carafe_neck(model, scope):
    return _upsampler_fpn(model, 'CARAFE', scope, dict(type='carafe_torch', up_kernel=5, up_group=1,
                                                       encoder_kernel=3, compressed_channels=64))


@config_variant('DySample', 'neck', 'DySample (4 groups) as the FPN top-down x2 upsampler')
def dysample_neck(model, scope):
    return _upsampler_fpn(model, 'DySample', scope, dict(type='dysample', groups=4))


def applicable_variants(model_cfg, scope, names=None):
    """({name: transformed model config} of the variants that apply, {name: refusal message} of those that do not);
    ``names`` (default: all declared) picks and orders them; an unknown name is a ``ValueError``."""
    names = list(CONFIG_VARIANTS) if names is None else list(names)
    unknown = [n for n in names if n not in CONFIG_VARIANTS]
    if unknown:
        raise ValueError(f'unknown variant names {unknown}; known: {", ".join(CONFIG_VARIANTS)}')
    done, refused = {}, {}
    for name in names:
        try:
            done[name] = CONFIG_VARIANTS[name].apply(model_cfg, scope)
        except VariantNotApplicable as e:
            refused[name] = str(e)
    return done, refused
