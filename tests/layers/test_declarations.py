"""The registry walk: every layer registered from mmdynconv.layers has a complete, correct declaration
(mmdynconv/layers/declarations.py), and every consumer finds it there: the FLOP counter, the benchmarks, ONNX export,
plain-checkpoint loading, the comparison's config variants and the temperature hook. A failure names the layer."""

import pytest
import torch
from mmengine.registry import HOOKS
from test_conformance import CHANNELS, LAYERS, build, is_conv, layer_inputs, registered_layers
from torch_support import needs_custom_ops, needs_export, needs_openmmlab

from mmdynconv.layers.declarations import DECLARATIONS, EXPORT_RULES, FLOP_HANDLES

DECLARED = sorted(DECLARATIONS)


def test_every_registered_layer_is_declared_and_every_declaration_registered():
    assert sorted(registered_layers()) == DECLARED, (
        f'registered without a declaration: {sorted(set(registered_layers()) - set(DECLARED))}; declared but not '
        f'registered: {sorted(set(DECLARED) - set(registered_layers()))}')


@pytest.mark.parametrize('name', DECLARED)
def test_kind_matches_the_constructor(name):
    assert DECLARATIONS[name].kind == ('conv' if is_conv(name) else 'upsampler'), name


def small_input(name, batch=2):
    torch.manual_seed(1)
    return torch.randn(batch, CHANNELS, 6, 8)


@needs_custom_ops
@pytest.mark.parametrize('name', DECLARED)
def test_flop_handles_count_every_declared_op(name):
    from mmdynconv.utils.complexity import flop_analyzer
    declared = DECLARATIONS[name]
    missing = [op for op in declared.ops if op not in FLOP_HANDLES]
    assert not missing, f'{name}: ops without a FLOP handle in FLOP_HANDLES: {missing}'
    layer = build(name).eval()
    analyzer = flop_analyzer(layer, layer_inputs(layer, small_input(name)))
    counted = analyzer.by_operator()
    unsupported = [op for op in analyzer.unsupported_ops() if 'mmdynconv' in op]
    assert not unsupported, f'{name}: the trace runs mmdynconv ops without a FLOP handle: {unsupported}'
    for op in declared.ops:
        assert any(counted.get(key, 0) > 0 for key in FLOP_HANDLES[op].keys), \
            f'{name}: declares {op} but the trace counted none of {FLOP_HANDLES[op].keys}'


@pytest.mark.parametrize('name', DECLARED)
def test_benchmark_lists_it(name):
    from mmdynconv.benchmark.registry import MODULES, get_benchmark
    suite = DECLARATIONS[name].benchmark
    assert suite in MODULES, f'{name}: benchmark must name a tools/benchmark.py set ({sorted(MODULES)}), got {suite!r}'
    benchmark = get_benchmark(suite)
    if suite in ('convs', 'ddf_up'):
        import importlib
        methods = importlib.import_module(f'mmdynconv.benchmark.{MODULES[suite]}').METHODS
        assert name in methods or name == 'FDConv', f'{name}: not among the {suite!r} benchmark methods {methods}'
    assert benchmark.cases


@pytest.mark.parametrize('name', DECLARED)
def test_export_rule(name):
    rule = DECLARATIONS[name].export
    assert rule in EXPORT_RULES or len(rule) > 20, f'{name}: export must be one of {EXPORT_RULES} or the reason it ' \
                                                    f'cannot be exported, got {rule!r}'


@needs_export
@pytest.mark.parametrize('name', [n for n in DECLARED if DECLARATIONS[n].export in EXPORT_RULES])
def test_exports_without_custom_ops(name):
    from mmdynconv.deploy.export import export_program
    layer = build(name).eval()
    inputs = layer_inputs(layer, small_input(name, batch=1))
    with torch.no_grad():
        expected = layer(*inputs)
    program = export_program(layer, inputs)
    targets = {str(node.target) for node in program.graph.nodes if node.op == 'call_function'}
    assert not [t for t in targets if 'mmdynconv' in t], f'{name}: exported graph keeps custom ops {targets}'
    torch.testing.assert_close(program.module()(*inputs), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('name', DECLARED)
def test_plain_conv_checkpoint(name):
    rule = DECLARATIONS[name].plain_conv
    if rule != 'converts':
        assert len(rule) > 20, f'{name}: plain_conv must be \'converts\' or the reason it does not, got {rule!r}'
        return
    assert DECLARATIONS[name].kind == 'conv', f'{name}: only a conv can load a plain conv\'s weights'
    plain = torch.nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1, bias=False)
    layer = build(name)
    result = layer.load_state_dict(plain.state_dict(), strict=False)
    assert not result.unexpected_keys and 'weight' not in result.missing_keys, f'{name}: {result}'


@needs_openmmlab   # reads mmdet's config
@pytest.mark.parametrize('name', DECLARED)
def test_variant_transforms_a_faster_rcnn_r50_fpn(name):
    from mmengine.config import Config

    from mmdynconv.models.variants import CONFIG_VARIANTS
    variant = DECLARATIONS[name].variant
    assert variant is not None, f'{name}: declare its comparison Variant'
    assert variant.name in CONFIG_VARIANTS, f'{name}: variant {variant.name!r} is not a config variant'
    cfg = Config.fromstring("_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'", '.py')
    model = CONFIG_VARIANTS[variant.name].apply(cfg.model, 'mmdet')
    assert f"'type': '{name}'" in repr(model), f'{name}: its variant does not place the layer: {model}'


@pytest.mark.parametrize('name', DECLARED)
def test_hooks_are_registered_and_apply(name):
    for hook in DECLARATIONS[name].hooks:
        assert HOOKS.get(hook) is not None, f'{name}: hook {hook!r} is not registered'
        if hook == 'TemperatureAnnealHook':
            layer = build(name)
            assert HOOKS.get(hook).set_temperature(layer, 7.0) == 1 and layer.temperature == 7.0, name


def test_temperature_hook_sets_exactly_the_declared_layers():
    from mmdynconv.layers.temperature_hook import TemperatureAnnealHook
    for name in LAYERS:
        layer = build(name)
        wanted = 'TemperatureAnnealHook' in DECLARATIONS[name].hooks
        assert TemperatureAnnealHook.set_temperature(layer, 3.0) == int(wanted), name


def test_declaration_errors_name_the_field():
    from mmdynconv.layers.declarations import LayerDeclaration, Variant, declaration
    with pytest.raises(ValueError, match="kind must be 'conv' or 'upsampler'"):
        LayerDeclaration('X', 'pool', None)
    with pytest.raises(ValueError, match='variant.placement must be one of'):
        LayerDeclaration('X', 'conv', Variant('X', 'stem', {}, 'x'))
    with pytest.raises(KeyError, match="no layer declaration for 'Nope'.*add one to"):
        declaration('Nope')

