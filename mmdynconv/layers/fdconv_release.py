"""The authors' FDConv parameter layout (Linwei-Chen/FDConv, ``FDConv_detection/mmdet_custom/FDConv.py``) and its
conversion into ours, used when a release state dict is loaded into :class:`~mmdynconv.layers.FDConv`.

Release key (under a layer prefix)                     ours
``dft_weight`` (1, Co·k, ⌊Ci·k/2⌋+1, 2)                ``spectrum`` (Co·k, ⌊Ci·k/2⌋+1, 2)  (same scaling)
``KSM_Global.fc.weight`` (A, Ci, 1, 1)                 ``ksm_global.fc_weight`` (A, Ci)
``KSM_Global.bn.*``                                    ``ksm_global.norm.*``
``KSM_Global.relu.{scale,bias}``                       ``ksm_global.act.{scale,bias}``
``KSM_Global.{channel,filter,spatial,kernel}_fc.*``    ``ksm_global.{in,out,pos,kernel}_head.*`` (1×1 conv -> matrix)
``KSM_Local.conv.weight`` (Co·k², 1, κ)                ``ksm_local.weight``
``KSM_Local.norm.*``                                   ``ksm_local.norm.*``
``FBM.freq_weight_conv_list.m.{weight,bias}``          ``fbm.weight[m]`` (Ci, 3, 3), ``fbm.bias[m]``
``bias``                                               ``bias``

Only the release's published configuration converts: ``param_ratio = 1`` and ``param_reduction = 1``, FBM with one
spatial group and no low-frequency attention; anything else is reported as an error.
"""
import re
import types

import torch
from torch import nn

__all__ = ['RELEASE_MARKER', 'RELEASE_ENV', 'is_release_layout', 'convert_release_layer', 'convert_release_checkpoint',
           'import_fdconv_release']

RELEASE_ENV = 'MMDYNCONV_FDCONV_RELEASE'   # path of the release's FDConv.py, for tools/benchmark.py fdconv_sizes

RELEASE_MARKER = 'dft_weight'
_HEADS = {'channel_fc': 'in_head', 'filter_fc': 'out_head', 'spatial_fc': 'pos_head', 'kernel_fc': 'kernel_head'}
_FBM = re.compile(r'FBM\.freq_weight_conv_list\.(\d+)\.(weight|bias)$')


def is_release_layout(state_dict, prefix=''):
    """Whether ``state_dict`` holds an FDConv layer in the release's layout under ``prefix``."""
    return prefix + RELEASE_MARKER in state_dict


def _rename(name):
    """Our name for a release key (without the layer prefix); None for FBM conv keys (handled together)."""
    if name == RELEASE_MARKER:
        return 'spectrum'
    if name == 'bias':
        return 'bias'
    head, _, rest = name.partition('.')
    if head == 'KSM_Global':
        module, _, param = rest.partition('.')
        if module == 'fc' and param == 'weight':
            return 'ksm_global.fc_weight'
        if module == 'bn':
            return 'ksm_global.norm.' + param
        if module == 'relu':
            return 'ksm_global.act.' + param
        if module in _HEADS:
            return f'ksm_global.{_HEADS[module]}.{param}'
    if head == 'KSM_Local':
        if rest == 'conv.weight':
            return 'ksm_local.weight'
        if rest.startswith('norm.'):
            return 'ksm_local.' + rest
    return None


def convert_release_layer(state_dict, prefix, num_fbm_maps):
    """Convert, in place, the release-layout keys of one layer under ``prefix`` into ours.

    Args:
        state_dict: mutable mapping (e.g. what ``_load_from_state_dict`` receives).
        prefix: the layer's key prefix (ending in '.' or empty).
        num_fbm_maps: M, the number of FBM band maps the target layer has (0 without FBM); None takes the maps
            the checkpoint has.

    Returns:
        A list of error messages (empty when the conversion succeeded).
    """
    errors = []
    keys = [k for k in list(state_dict) if k.startswith(prefix)]
    fbm = {}
    for key in keys:
        name = key[len(prefix):]
        match = _FBM.match(name)
        if match:
            fbm[(int(match.group(1)), match.group(2))] = state_dict.pop(key)
            continue
        ours = _rename(name)
        if ours is None:
            errors.append(f'unexpected key in a release FDConv state dict: {key}')
            continue
        value = state_dict.pop(key)
        if name == RELEASE_MARKER:
            if value.dim() != 4 or value.shape[0] != 1:
                errors.append(f'{key}: release dft_weight must be (1, Co·k, ⌊Ci·k/2⌋+1, 2) (param_ratio 1, '
                              f'param_reduction 1), got {tuple(value.shape)}')
                continue
            value = value[0]
        elif value.dim() == 4 and ours.startswith('ksm_global.') and ours.endswith(('weight', 'fc_weight')):
            value = value.flatten(1)  # 1×1 conv weight (out, in, 1, 1) -> linear weight (out, in)
        state_dict[prefix + ours] = value
    if fbm:
        maps = sorted({m for m, _ in fbm})
        num_fbm_maps = len(maps) if num_fbm_maps is None else num_fbm_maps
        if maps != list(range(num_fbm_maps)) or any((m, p) not in fbm for m in maps for p in ('weight', 'bias')):
            errors.append(f'{prefix}FBM: the release checkpoint has band maps {maps} (weight and bias each), this '
                          f'layer expects {num_fbm_maps} (use_fbm and cutoffs must match the checkpoint)')
        elif any(fbm[(m, 'weight')].shape[0] != 1 for m in maps):
            errors.append(f'{prefix}FBM: only spatial_group=1 release checkpoints convert')
        else:
            state_dict[prefix + 'fbm.weight'] = torch.cat([fbm[(m, 'weight')] for m in maps])
            state_dict[prefix + 'fbm.bias'] = torch.cat([fbm[(m, 'bias')] for m in maps])
    elif num_fbm_maps:
        errors.append(f'{prefix}FBM: this layer uses FBM but the release checkpoint has no FBM keys '
                      f'(set use_fbm=False to match it)')
    return errors


def convert_release_checkpoint(state_dict):
    """Convert every release-layout FDConv layer of a whole checkpoint (any prefix, e.g. ``backbone.layer1.0.conv1.``).

    Returns:
        (new state dict, the converted layer prefixes, error messages). Keys of other modules are kept as they are.
    """
    state = dict(state_dict)
    prefixes = sorted(k[:-len(RELEASE_MARKER)] for k in state if k.endswith(RELEASE_MARKER)
                      and (k == RELEASE_MARKER or k.endswith('.' + RELEASE_MARKER)))
    errors = []
    for prefix in prefixes:
        errors += convert_release_layer(state, prefix, None)
    return state, prefixes, errors


def import_fdconv_release(path):
    """The release's ``FDConv.py`` at ``path`` as a module (its class ``FDConv``), imported with stand-ins for its
    ``mmcv.cnn.CONV_LAYERS`` registry and ``timm`` imports (nothing else changed); for the parity tool and the
    benchmark. The file is not part of this repository."""
    from ..utils.release_import import import_file  # here: loading a layer never needs it

    registry = types.SimpleNamespace(register_module=lambda *a, **k: (lambda cls: cls))
    stubs = {'mmcv': types.ModuleType('mmcv'), 'mmcv.cnn': types.ModuleType('mmcv.cnn'),
             'timm': types.ModuleType('timm'), 'timm.models': types.ModuleType('timm.models'),
             'timm.models.layers': types.ModuleType('timm.models.layers')}
    stubs['mmcv.cnn'].CONV_LAYERS = registry
    stubs['timm.models.layers'].trunc_normal_ = nn.init.trunc_normal_
    return import_file(path, 'fdconv_release_module', stubs)
