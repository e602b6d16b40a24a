"""Optional dependencies: which OpenMMLab packages are importable here."""
from importlib.util import find_spec

__all__ = ['is_installed']


def is_installed(name):
    """True when ``name`` can be imported (False also when it is blocked via ``sys.modules[name] = None``)."""
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):
        return False
