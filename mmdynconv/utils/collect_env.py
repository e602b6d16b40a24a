"""What this environment has and what mmdynconv will do in it: ``python -m mmdynconv.utils.collect_env``.

Versions (Python, torch and its CUDA, triton, mmengine, mmcv and whether its compiled ops load, mmdet, mmseg,
numpy), the GPUs and their compute capabilities, custom-op support (what ``torch.compile`` / ``opcheck`` / export
need), and for every op the backend it uses on CUDA and on CPU tensors, with the reason. Paste it into bug reports.
"""
import importlib
import platform
import sys
from collections import OrderedDict

import torch

from ..ops import backend as backend_module
from ..ops.compat import CUSTOM_OP_REASON, HAS_CUSTOM_OP, MIN_TORCH, TORCH_VERSION
from ..version import __version__

__all__ = ['OPS', 'collect_env', 'main']

# op -> whether it has Triton kernels (the others run their PyTorch implementation on every device)
OPS = OrderedDict([('ddf', True), ('fdconv_dynamic_conv', True), ('frequency_band_mix', False),
                   ('kernel_mixture_conv', False), ('carafe', False)])


def _version(module):
    try:
        return getattr(importlib.import_module(module), '__version__', 'installed (no __version__)')
    except Exception as err:  # noqa: BLE001 - an uninstalled or broken package is reported, not raised
        return f'not available ({type(err).__name__}: {err})'.splitlines()[0][:160]


def _mmcv_ops():
    try:
        importlib.import_module('mmcv')
    except Exception:  # noqa: BLE001
        return 'no mmcv'
    try:
        from mmcv.ops import nms  # noqa: F401  (loads the compiled extension)
        return 'compiled ops load'
    except Exception as err:  # noqa: BLE001
        return f'ops do not load ({type(err).__name__}: {str(err).splitlines()[0][:120]})'


def collect_env():
    """An ordered {name: value} of the environment facts above."""
    env = OrderedDict()
    env['mmdynconv'] = __version__
    env['Python'] = f'{sys.version.split()[0]} ({platform.platform()})'
    floor = '.'.join(map(str, MIN_TORCH))
    env['torch'] = (f'{torch.__version__} (CUDA build {torch.version.cuda or "none"}; supported >= {floor}'
                    f'{"" if TORCH_VERSION >= MIN_TORCH else ": TOO OLD"})')
    env['CUDA available'] = torch.cuda.is_available()
    for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        major, minor = torch.cuda.get_device_capability(i)
        env[f'GPU {i}'] = f'{torch.cuda.get_device_name(i)}, compute capability {major}.{minor} (sm_{major}{minor})'
    minimum = '.'.join(map(str, backend_module.TRITON_MIN))
    env['triton'] = (f'{backend_module.TRITON_VERSION} (kernels need >= {minimum})'
                     if backend_module.TRITON_VERSION else 'not installed')
    env['TRITON_INTERPRET'] = 'on' if backend_module.triton_interpreter_enabled() else 'off'
    env['MMDYNCONV_BACKEND'] = backend_module.os.environ.get(backend_module.ENV_VAR, '') or 'unset (auto)'
    env['custom ops'] = ('torch.library.custom_op: torch.compile(fullgraph=True), opcheck and torch.export '
                         'supported' if HAS_CUSTOM_OP else CUSTOM_OP_REASON)
    for module in ('numpy', 'mmengine', 'mmcv', 'mmdet', 'mmseg'):
        env[module] = _version(module)
    env['mmcv ops'] = _mmcv_ops()
    for device in ('cuda', 'cpu'):
        for op, has_kernels in OPS.items():
            if has_kernels:
                choice, why = backend_module.explain_backend(device)
            else:
                choice, why = 'reference', 'PyTorch implementation only (no Triton kernel)'
            env[f'{op} on {device}'] = f'{choice}: {why}'
    return env


def main():
    for name, value in collect_env().items():
        print(f'{name}: {value}')


if __name__ == '__main__':
    main()
