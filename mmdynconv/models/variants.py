"""Config variants: each layer's one-change rule that turns a plain mmdet / mmseg model config into the layer's variant.

Each layer declares its variant (a :class:`~mmdynconv.layers.declarations.Variant`: its name, placement and config)
in :mod:`mmdynconv.layers.declarations`; this module turns every declaration into a transform, one per placement, and
the comparison runner (``tools/compare_layers.py --config``) discovers them through :data:`CONFIG_VARIANTS`
(:func:`config_variant` adds a transform that no declaration describes). A transform
takes the model config (a plain dict) and the task's registry scope (``'mmdet'`` / ``'mmseg'``) and returns the new
model config; it changes only the part it names and leaves everything else (pretrained ``init_cfg``, ``frozen_stages``,
``norm_eval``, heads, data preprocessor) as it was. A model it cannot transform raises :class:`VariantNotApplicable`,
naming the variant and the config part it needs, before anything is built.

Backbone variants take mmdet's ``ResNet`` / ``ResNetV1d`` or mmseg's ``ResNetV1c`` of any depth and place the layer
where its paper does: conv1-3 of every Bottleneck (conv1-2 of every BasicBlock) for FDConv, CondConv, DY-Conv and
ODConv (stem and shortcut projections stay plain); conv2 of every Bottleneck for DDF (the ``dcn`` slot; no BasicBlock
placement exists). Neck variants replace mmdet's / mmseg's ``FPN`` by :class:`~.necks.UpsamplerFPN` with the
layer as the top-down ×2 upsampler; everything else about the FPN is kept (mmseg's exclusive ``end_level`` and
``extra_convs_on_inputs`` are translated). An mmseg model without a neck whose head has its own top-down path
(``UPerHead``, ``SegformerHead``) gets the head's upsampler version instead (``UpsamplerUPerHead``,
``UpsamplerSegformerHead``), its other arguments kept.
"""
import copy
from dataclasses import dataclass
from typing import Callable, Dict

__all__ = ['VariantNotApplicable', 'ConfigVariant', 'config_variant', 'block_convs_backbone', 'dcn_slot_backbone',
           'fpn_upsampler_neck', 'applicable_variants', 'UPSAMPLER_HEADS']

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
    description of the change; ``transform(model_cfg, scope) -> model_cfg``; ``hooks``: hook configs its runs add to
    ``custom_hooks`` (the layer's schedule, e.g. a temperature annealing)."""
    name: str
    part: str
    layer: str
    transform: Callable
    hooks: tuple = ()

    def apply(self, model_cfg, scope):
        """The variant's model config (a new dict); raises :class:`VariantNotApplicable`."""
        if scope not in ('mmdet', 'mmseg'):
            raise VariantNotApplicable(self.name, 'default_scope', "'mmdet' or 'mmseg'", repr(scope))
        return self.transform(copy.deepcopy(_plain(model_cfg)), scope)


CONFIG_VARIANTS: Dict[str, ConfigVariant] = {}


def config_variant(name, part, layer, hooks=()):
    """Declare ``transform(model_cfg, scope)`` as the variant ``name`` (decorator); ``hooks``: see
    :class:`ConfigVariant`."""
    if part not in ('backbone', 'neck'):
        raise ValueError(f"config_variant: part must be 'backbone' or 'neck', got {part!r}")

    def register(transform):
        if name in CONFIG_VARIANTS:
            raise ValueError(f'config_variant: {name!r} is declared twice')
        CONFIG_VARIANTS[name] = ConfigVariant(name, part, layer, transform, tuple(hooks))
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


def block_convs_backbone(model, variant, scope):
    """``'block_convs'``: the ResNet as ``variant.backbones[type]`` with ``variant.cfg`` in every block conv."""
    return _block_conv_backbone(model, variant.name, scope, variant.backbones, {variant.cfg_key: dict(variant.cfg)})


def dcn_slot_backbone(model, variant, scope):
    """``'dcn_slot'``: ``variant.cfg`` as conv2 of every Bottleneck of every stage (the ResNet's ``dcn``)."""
    backbone, _, _, _ = _resnet(model, variant.name, scope, bottleneck_only=True)
    backbone.update(dcn=dict(variant.cfg), stage_with_dcn=(True,) * int(backbone.get('num_stages', 4)))
    return model


# --- necks -----------------------------------------------------------------------------------------------------

_FPN_NEEDS = ("of type mmdet / mmseg 'FPN' (one neck, not a list), or none with an mmseg decode_head of type "
              "'UPerHead' / 'SegformerHead'")


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


# mmseg heads with an FPN-like top-down path of their own, and their upsampler versions (:mod:`..decode_heads`)
UPSAMPLER_HEADS = dict(UPerHead='UpsamplerUPerHead', SegformerHead='UpsamplerSegformerHead')


def _upsampler_head(model, scope):
    """The mmseg decode head (a dict) an upsampler variant goes into when the model has no neck, else None."""
    head = model.get('decode_head')
    if scope != 'mmseg' or model.get('neck') is not None or not isinstance(head, dict):
        return None
    kind_scope, kind = _type_name(head, scope)
    return head if kind_scope == 'mmseg' and kind in UPSAMPLER_HEADS else None


def fpn_upsampler_neck(model, variant, scope):
    """``'fpn_upsampler'``: the FPN as ``UpsamplerFPN`` with ``variant.cfg`` as its top-down upsampler; in an mmseg
    model without a neck whose decode head is ``UPerHead`` or ``SegformerHead``, that head's upsampler version
    (``UpsamplerUPerHead``: its top-down path; ``UpsamplerSegformerHead``: its resizes to the finest level)."""
    head = _upsampler_head(model, scope)
    if head is not None:
        kind = _type_name(head, scope)[1]
        model['decode_head'] = dict(head, type=UPSAMPLER_HEADS[kind], upsample_cfg=dict(variant.cfg))
        return model
    return _upsampler_fpn(model, variant.name, scope, variant.cfg)


PLACEMENT_TRANSFORMS = dict(block_convs=('backbone', block_convs_backbone), dcn_slot=('backbone', dcn_slot_backbone),
                            fpn_upsampler=('neck', fpn_upsampler_neck))


def _declare_layer_variants():
    from ..layers.declarations import DECLARATIONS
    for declared in DECLARATIONS.values():
        variant = declared.variant
        if variant is not None:
            part, transform = PLACEMENT_TRANSFORMS[variant.placement]
            config_variant(variant.name, part, variant.description, variant.hooks)(
                lambda model, scope, transform=transform, variant=variant: transform(model, variant, scope))


_declare_layer_variants()


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
