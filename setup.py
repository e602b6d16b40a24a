"""Build script. The static metadata (name, version, description, packages) lives in setup.cfg; this file adds:

- ``install_requires`` / ``extras_require`` read from ``requirements/*.txt``, the one list that pip and
  ``tools/setup_env.sh`` both use;
- the OpenMMLab ``mmdynconv/.mim/`` folder (``configs/``, ``tools/``, ``model-index.yml``) that ``mim train``,
  ``mim test``, ``mim search`` and mmengine's ``_base_ = 'mmdynconv::...'`` look for inside the installed package.
  Builds of a wheel or sdist copy ``configs/`` and ``tools/`` there, leaving out ``EXPERIMENT_TOOLS`` (entry points
  into the clone's ``experiments/``, which no wheel holds); an editable install (``pip install -e .``,
  ``mim install -e .``) symlinks them, so that edits to the checkout's configs are seen at once (its ``tools`` link
  shows every tool: the checkout has ``experiments/``). ``model-index.yml`` is written out in both cases with its
  ``Import`` patterns (``configs/*/metafile.yml``) expanded: mim expands them itself, mmengine reads the list
  literally.
"""
import glob
import os
import os.path as osp
import re
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


def expand_model_index(text):
    """``model-index.yml``'s text with every ``Import`` entry that is a glob pattern replaced by the files it matches
    under ROOT, sorted (a line-based edit: PyYAML is not a build dependency)."""
    lines = []
    for line in text.splitlines():
        match = re.fullmatch(r'(\s*-\s*)(\S*[*?[]\S*)\s*', line)
        if match:
            paths = sorted(osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, match[2])))
            lines += [match[1] + p.replace(os.sep, '/') for p in paths]
        else:
            lines.append(line)
    return '\n'.join(lines) + '\n'


def populate_mim_dir(link):
    """Make ``mmdynconv/.mim/<item>`` a relative symlink to (``link=True``) or a copy of each item of MIM_ITEMS; a
    copy of ``tools`` leaves out EXPERIMENT_TOOLS; ``model-index.yml`` is always written, expanded
    (:func:`expand_model_index`)."""
    os.makedirs(MIM_DIR, exist_ok=True)
    for item in MIM_ITEMS:
        src, dst = osp.join(ROOT, item), osp.join(MIM_DIR, item)
        if not osp.exists(src):
            raise FileNotFoundError(f'setup.py: {src} is missing; mmdynconv/.mim needs {", ".join(MIM_ITEMS)}')
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if item == 'model-index.yml':
            with open(src, encoding='utf-8') as f, open(dst, 'w', encoding='utf-8') as out:
                out.write(expand_model_index(f.read()))
        elif link:
            os.symlink(osp.relpath(src, MIM_DIR), dst)
        else:
            skip = ('__pycache__', '*.pyc') + (EXPERIMENT_TOOLS if item == 'tools' else ())
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*skip))


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
