"""Backbone variants; each submodule needing mmdet or mmseg is imported only when that package is installed."""
from importlib.util import find_spec

HAS_MMDET = find_spec('mmdet') is not None
HAS_MMSEG = find_spec('mmseg') is not None
