"""Argument checks shared by every op and layer: clear errors naming the caller, the argument and what it expects.

``owner`` is the op or layer name the message starts with. Each op validates its arguments in one function named
``check_<op>_args`` built on these helpers.
"""
import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

__all__ = ['FLOAT_DTYPES', 'check_int', 'check_pair', 'check_optional_bool', 'check_choice', 'check_positive',
           'check_conv_args', 'check_feature_map', 'check_guided_input', 'check_tensor', 'check_like']


def check_int(owner, name, value, minimum=None):
    """``value`` if it is an int (not a bool) ≥ ``minimum``; TypeError / ValueError otherwise."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f'{owner}: {name} must be an int, got {type(value).__name__} {value!r}')
    if minimum is not None and value < minimum:
        raise ValueError(f'{owner}: {name} must be >= {minimum}, got {value}')
    return value


def check_pair(owner, name, value, minimum=None):
    """An int or a pair of ints, each ≥ ``minimum``, as a tuple of two ints."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(values) != 2:
        raise ValueError(f'{owner}: {name} must be an int or a pair of ints, got {value!r}')
    return tuple(check_int(owner, name, v, minimum) for v in values)


def check_optional_bool(owner, name, value):
    """``value`` if it is None, True or False; TypeError otherwise."""
    if value is not None and not isinstance(value, bool):
        raise TypeError(f'{owner}: {name} must be None, True or False, got {value!r}')
    return value


def check_choice(owner, name, value, choices):
    """``value`` if it is one of ``choices``; ValueError otherwise."""
    if value not in choices:
        raise ValueError(f'{owner}: {name} must be one of {tuple(choices)}, got {value!r}')
    return value


def check_positive(owner, name, value):
    """``value`` as a float if it is a number > 0; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f'{owner}: {name} must be a number > 0, got {value!r}')
    return float(value)


def check_conv_args(owner, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias):
    """``build_conv_layer``'s arguments of a conv layer, checked: (in_channels, out_channels, kernel_size, stride,
    padding, dilation, groups) with the spatial ones as pairs; errors name the argument."""
    in_channels = check_int(owner, 'in_channels', in_channels, 1)
    out_channels = check_int(owner, 'out_channels', out_channels, 1)
    kernel_size = check_pair(owner, 'kernel_size', kernel_size, 1)
    stride = check_pair(owner, 'stride', stride, 1)
    padding = check_pair(owner, 'padding', padding, 0)
    dilation = check_pair(owner, 'dilation', dilation, 1)
    groups = check_int(owner, 'groups', groups, 1)
    if in_channels % groups or out_channels % groups:
        raise ValueError(f'{owner}: groups ({groups}) must divide in_channels ({in_channels}) and out_channels '
                         f'({out_channels})')
    if not isinstance(bias, bool):
        raise TypeError(f'{owner}: bias must be a bool, got {bias!r}')
    return in_channels, out_channels, kernel_size, stride, padding, dilation, groups


def check_feature_map(owner, name, x, channels):
    """``x`` if it is a floating-point (B, ``channels``, H, W) tensor; TypeError / ValueError naming ``name``
    otherwise (the input check of every layer's forward)."""
    if not (hasattr(x, 'is_floating_point') and hasattr(x, 'shape')):
        raise TypeError(f'{owner}: {name} must be a (B, {channels}, H, W) tensor, got {type(x).__name__}')
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f'{owner}: {name} must be (B, {channels}, H, W), got {tuple(x.shape)}')
    if not x.is_floating_point():
        raise TypeError(f'{owner}: {name} must be a floating-point tensor, got {x.dtype}')
    return x


def check_guided_input(owner, x, guidance, channels, guidance_channels, scale_factor):
    """The input check of a guided ×``scale_factor`` upsampler: x (B, ``channels``, H, W) and guidance
    (B, ``guidance_channels``, S·H, S·W) on x's device; errors name ``input`` / ``guidance``."""
    check_feature_map(owner, 'input', x, channels)
    check_feature_map(owner, 'guidance', guidance, guidance_channels)
    if guidance.device != x.device:
        raise ValueError(f"{owner}: guidance must be on the input's device {x.device}, got {guidance.device}")
    b, _, h, w = x.shape
    expected = (b, guidance_channels, scale_factor * h, scale_factor * w)
    if tuple(guidance.shape) != expected:
        raise ValueError(f'{owner}: guidance must be (B, C_g, S·H, S·W) = {expected} for an input of shape '
                         f'{tuple(x.shape)}, got {tuple(guidance.shape)}')


def check_tensor(owner, name, value, dtypes=FLOAT_DTYPES, ndim=None):
    """``value`` if it is a tensor with a dtype in ``dtypes`` (any dtype when None) and ``ndim`` dimensions (any when
    None); TypeError / ValueError naming ``name`` otherwise."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f'{owner}: {name} must be a torch.Tensor, got {type(value).__name__}')
    if dtypes is not None and value.dtype not in dtypes:
        names = [str(d).replace('torch.', '') for d in dtypes]
        expected = names[0] if len(names) == 1 else f'{", ".join(names[:-1])} or {names[-1]}'
        raise TypeError(f'{owner}: {name} must be {expected}, got {value.dtype}')
    if ndim is not None and value.dim() != ndim:
        raise ValueError(f'{owner}: {name} must be {ndim}-D, got shape {tuple(value.shape)}')
    return value


def check_like(owner, name, value, ref_name, ref, dtype=False):
    """``value`` if it has the dtype (when ``dtype``) and the device of the tensor ``ref`` (the argument
    ``ref_name``); TypeError / ValueError otherwise."""
    if dtype and value.dtype != ref.dtype:
        raise TypeError(f"{owner}: {name} must have {ref_name}'s dtype {ref.dtype}, got {value.dtype}")
    if value.device != ref.device:
        raise ValueError(f"{owner}: {name} must be on {ref_name}'s device {ref.device}, got {value.device}")
    return value
