"""``_base_ = 'mmdynconv::<folder>/<config>.py'``: let mmengine resolve the configs this package ships.

mmengine resolves ``PKG::path`` only for the packages in its hard-coded table ``mmengine.config.utils.MODULE2PACKAGE``
(module name -> distribution name); any other prefix fails with ``AssertionError: mmengine does not support to load
mmdynconv config.`` :func:`register_config_scope` adds ``mmdynconv`` to that table, and ``import mmdynconv`` calls
it. The config is then looked up in the installed package's ``.mim/`` folder (``mmdynconv/.mim/configs/...``,
through ``.mim/model-index.yml``), which setup.py fills for wheels and editable installs alike.

The table's value is what mmengine hands to ``is_installed`` / ``get_installed_path``. Those look the name up as a
distribution first, and for an editable (PEP 660) install the distribution's location is site-packages, where no
``mmdynconv`` folder exists. The value ``'mmdynconv.version'`` is no distribution, so both fall back to
``importlib.util.find_spec``, whose origin (``<package dir>/version.py``) gives the package folder that is really
imported, for wheels and editable installs alike, in mmengine 0.10.7 and onedl-mmengine 0.10.12.

The same table breaks ``mmseg::`` bases on the onedl stack: its entry ``'mmseg': 'mmsegmentation'`` names a
distribution that onedl-mmsegmentation does not have (onedl-mmengine 0.10.12 then reports "mmsegmentation is not
installed"). :func:`register_config_scope` therefore also points every entry whose distribution is missing but whose
module imports (a fork under another distribution name) at the module name, which mmengine resolves through
``find_spec``, as it already does for ``mmdet`` (whose two names agree).

So it works wherever mmdynconv is imported before the config is parsed: our ``tools/train.py`` / ``tools/test.py``
(and therefore ``mim train mmdynconv`` / ``mim test mmdynconv``), and any script or notebook that runs
``import mmdynconv`` first. It cannot work in a program that parses the config before importing us, e.g. mmdet's or
mmseg's own ``tools/train.py``: ``custom_imports`` is read from the parsed config, too late for its ``_base_``.

mmengine also stamps the prefix of a ``PKG::`` base as the registry scope (``_scope_``) of every top-level dict with
a ``type`` that does not carry a scope yet. ``mmdynconv`` is no registry scope (our configs run in the scope their
``default_scope`` names: ``mmdet``, ``mmseg``, ...), so :func:`replace_package_scope` rewrites those stamps to the
config's ``default_scope``; our tools call it after loading a config.
"""
from importlib.metadata import PackageNotFoundError, distribution
from importlib.util import find_spec

from mmengine.config.utils import MODULE2PACKAGE

__all__ = ['PACKAGE', 'register_config_scope', 'replace_package_scope']

PACKAGE = 'mmdynconv'
LOCATOR = 'mmdynconv.version'  # a direct submodule: dirname(find_spec(LOCATOR).origin) is the package folder


def register_config_scope():
    """Make ``mmdynconv::`` (and forks' ``PKG::``) resolvable by mmengine's config parser (idempotent); return the
    ``mmdynconv`` table entry."""
    MODULE2PACKAGE.setdefault(PACKAGE, LOCATOR)
    for module, dist in list(MODULE2PACKAGE.items()):
        if module != PACKAGE and module != dist and not _has_distribution(dist) and find_spec(module) is not None:
            MODULE2PACKAGE[module] = module
    return PACKAGE, MODULE2PACKAGE[PACKAGE]


def _has_distribution(name):
    try:
        distribution(name)
        return True
    except PackageNotFoundError:
        return False


def replace_package_scope(cfg):
    """Rewrite every ``_scope_ == 'mmdynconv'`` in the loaded ``cfg`` (an mmengine Config) to ``cfg.default_scope``.

    Returns the number of rewritten entries. A config without ``default_scope`` that carries such stamps is an error:
    there is no scope its types could be built in.
    """
    default_scope = cfg.get('default_scope')
    count = _replace(cfg._cfg_dict, default_scope)
    if count and not default_scope:
        raise ValueError(f"config {cfg.filename!r} inherits 'mmdynconv::' bases but sets no default_scope; expected "
                         "the registry scope its types live in, e.g. default_scope = 'mmdet' or 'mmseg'")
    return count


def _replace(node, scope):
    count = 0
    if isinstance(node, dict):
        if node.get('_scope_') == PACKAGE:
            if scope:
                node['_scope_'] = scope
            count += 1
        for value in node.values():
            count += _replace(value, scope)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += _replace(value, scope)
    return count
