"""Build script. The static metadata (name, version, description, packages) lives in setup.cfg; this file adds:

- ``install_requires`` / ``extras_require`` read from ``requirements/*.txt``, the one list that pip and
  ``tools/setup_env.sh`` both use;
- the OpenMMLab ``mmdynconv/.mim/`` folder (``configs/``, ``tools/``, ``model-index.yml``) that ``mim train``,
  ``mim test``, ``mim search`` and mmengine's ``_base_ = 'mmdynconv::...'`` look for inside the installed package.
  Builds of a wheel or sdist copy the three items there, leaving out ``EXPERIMENT_TOOLS`` (entry points into the
  clone's ``experiments/``, which no wheel holds); an editable install (``pip install -e .``, ``mim install -e .``)
  symlinks them, so that edits to the checkout's configs are seen at once (its ``tools`` link shows every tool: the
  checkout has ``experiments/``).
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import setup

ROOT = osp.dirname(osp.abspath(__file__))
MIM_DIR = osp.join(ROOT, 'mmdynconv', '.mim')
MIM_ITEMS = ('configs', 'tools', 'model-index.yml')
# tools/ entry points that import the clone's experiments/ package (not installed): not copied into mmdynconv/.mim
EXPERIMENT_TOOLS = ('depth_upsampling_demo.py', 'probe_fdconv_training.py')
EDITABLE_COMMANDS = ('develop', 'editable_wheel')  # legacy `setup.py develop` and PEP 660 (setuptools >= 64)


def read_requirements(name):
    """The requirement lines of ``requirements/<name>.txt``, without comments and blank lines."""
    with open(osp.join(ROOT, 'requirements', f'{name}.txt'), encoding='utf-8') as f:
        lines = (line.split('#', 1)[0].strip() for line in f)
        return [line for line in lines if line]


def populate_mim_dir(link):
    """Make ``mmdynconv/.mim/<item>`` a relative symlink to (``link=True``) or a copy of each item of MIM_ITEMS; a
    copy of ``tools`` leaves out EXPERIMENT_TOOLS."""
    os.makedirs(MIM_DIR, exist_ok=True)
    for item in MIM_ITEMS:
        src, dst = osp.join(ROOT, item), osp.join(MIM_DIR, item)
        if not osp.exists(src):
            raise FileNotFoundError(f'setup.py: {src} is missing; mmdynconv/.mim needs {", ".join(MIM_ITEMS)}')
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if link:
            os.symlink(osp.relpath(src, MIM_DIR), dst)
        elif osp.isdir(src):
            skip = ('__pycache__', '*.pyc') + (EXPERIMENT_TOOLS if item == 'tools' else ())
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*skip))
        else:
            shutil.copyfile(src, dst)


if __name__ == '__main__':
    populate_mim_dir(link=any(cmd in sys.argv for cmd in EDITABLE_COMMANDS))
    setup(
        install_requires=read_requirements('runtime'),
        extras_require={
            'mim': read_requirements('mminstall'),
            'mmdet': read_requirements('mmdet'),
            'mmseg': read_requirements('mmseg'),
            'tests': read_requirements('tests'),
        },
    )
