"""`import mmdynconv`: version, registration in mmengine's root registry, no hard dependency on mmdet or mmseg."""
import subprocess
import sys

import pytest
from mmengine.registry import MODELS

import mmdynconv
from mmdynconv.layers.declarations import DECLARATIONS

REGISTERED = sorted(DECLARATIONS) + ['UpsamplerFPN', 'FDConvResNet', 'FDConvResNetV1c', 'KWResNet', 'KWResNetV1c',
                                     'DynamicConvResNet', 'DynamicConvResNetV1c']


def test_version():
    assert isinstance(mmdynconv.__version__, str) and mmdynconv.__version__.count('.') == 2


@pytest.mark.parametrize('name', REGISTERED)
def test_registered_in_root_registry(name):
    assert MODELS.get(name) is not None and name in MODELS.module_dict


def test_ops_import_needs_only_torch():
    code = ('import sys\n'
            'for m in ("mmengine", "mmcv", "mmdet", "mmseg"): sys.modules[m] = None\n'
            'import mmdynconv.ops as ops; print(ops.ddf.__name__)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == 'ddf'


@pytest.mark.parametrize('missing,present,absent_type', [
    ('mmdet', 'FDConvResNetV1c', 'FDConvResNet'), ('mmseg', 'FDConvResNet', 'FDConvResNetV1c')])
def test_import_without_one_of_mmdet_mmseg(missing, present, absent_type):
    code = (f'import sys; sys.modules[{missing!r}] = None\n'
            'import mmdynconv\n'
            'from mmengine.registry import MODELS\n'
            f'assert {missing!r} not in [m for m in sys.modules if sys.modules[m] is not None]\n'
            f'assert MODELS.get({present!r}) is not None and MODELS.get("DDF") is not None\n'
            f'assert {absent_type!r} not in MODELS.module_dict\n'
            'print("ok")')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == 'ok', out.stderr[-3000:]


def test_import_without_mmcv_registers_the_layers():
    """With mmengine but no mmcv (e.g. a GPU machine carrying only pure-Python wheels) the layers register; the
    necks and backbones, which need mmcv, do not."""
    code = ('import sys; sys.modules["mmcv"] = None\n'
            'import mmdynconv\n'
            'from mmengine.registry import MODELS\n'
            'assert all(MODELS.get(t) is not None for t in ("DDF", "ddf_up", "FDConv", "ODConv", "carafe_torch"))\n'
            'assert "UpsamplerFPN" not in MODELS.module_dict\n'
            'print("ok")')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == 'ok', out.stderr[-3000:]


def _package_modules():
    import pathlib
    root = pathlib.Path(mmdynconv.__file__).parent
    return sorted('.'.join(('mmdynconv',) + p.relative_to(root).with_suffix('').parts).replace('.__init__', '')
                  for p in root.rglob('*.py') if '.mim' not in p.parts)


@pytest.mark.parametrize('name', _package_modules())
def test_public_names_are_deliberate(name):
    """Every module that defines public functions or classes lists them (and only names it has) in ``__all__``."""
    import importlib
    import inspect
    try:
        module = importlib.import_module(name)
    except ImportError as e:   # a backbone module of an absent mmdet / mmseg, a Triton module without Triton
        pytest.skip(f'{name}: {e}')
    public = {n for n, v in vars(module).items() if not n.startswith('_') and (inspect.isfunction(v) or
              inspect.isclass(v)) and getattr(v, '__module__', None) == module.__name__}
    names = getattr(module, '__all__', None)
    if names is None:
        assert not public, f'{name}: no __all__, but public {sorted(public)}'
        return
    assert len(set(names)) == len(names) and all(hasattr(module, n) for n in names), f'{name}: {names}'
    assert public <= set(names), f'{name}: public but not in __all__: {sorted(public - set(names))}'
