"""Import an authors' release module from a file, with stand-ins for the imports it needs but this environment
lacks (their registries, CUDA-only ops); used by the ``tools/*_release_parity.py`` tools."""
import importlib.util
import sys

__all__ = ['import_file']


def import_file(path, module_name, stubs=None):
    """The module at ``path``, executed as ``module_name`` while ``stubs`` ({module name: module}) stand in
    ``sys.modules``; ``sys.modules`` is restored afterwards, also when the import fails."""
    stubs = stubs or {}
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old
    return module
