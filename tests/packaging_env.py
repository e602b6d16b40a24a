"""Build a wheel from this checkout and install it into a fresh virtual environment (tests/test_packaging.py).

The fresh environment reuses the already-installed stack (torch, mmengine, mmcv, mmdet, ...) instead of downloading
and compiling it again: a ``.pth`` file puts a folder of symlinks to the running interpreter's site-packages on its
path, leaving out every entry of mmdynconv's own (editable) install, so the wheel is the only mmdynconv it can find
and the project folder is not on its path.
"""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig

from tool_runner import ROOT

# git-ignored or generated: never part of a build from a clean clone
SKIP = ('.git', '.venv*', 'data', 'work_dirs', 'build', 'dist', '*.egg-info', '__pycache__', '.mim',
        'benchmark_results', '.pytest_cache', '*.pyc')


def run(cmd, cwd=None, env=None, timeout=600):
    """Run ``cmd``; return its stdout+stderr, or fail with them."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f'{" ".join(map(str, cmd))} exited with {proc.returncode}:\n{proc.stdout[-6000:]}'
    return proc.stdout


def build_wheel(tmp):
    """Copy the checkout (without ignored / generated files) to ``tmp/src``, build a wheel into ``tmp/dist``."""
    src, dist = osp.join(tmp, 'src'), osp.join(tmp, 'dist')
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*SKIP))
    run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--quiet', '-w', dist, src])
    wheels = glob.glob(osp.join(dist, 'mmdynconv-*.whl'))
    assert len(wheels) == 1, wheels
    return wheels[0]


def is_own_entry(name):
    """Is this site-packages entry part of an installed mmdynconv (editable finder, .pth, metadata, package)?"""
    low = name.lower()
    return low == 'mmdynconv' or low.startswith(('mmdynconv-', 'mmdynconv.', '__editable__.mmdynconv',
                                                 '__editable___mmdynconv'))


def make_env(tmp):
    """A venv at ``tmp/env`` (no pip of its own) that sees the current stack but no mmdynconv; return its python."""
    env = osp.join(tmp, 'env')
    run([sys.executable, '-m', 'venv', '--without-pip', env])
    python = osp.join(env, 'bin', 'python')
    site = run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])']).strip()
    stack = osp.join(tmp, 'stack')
    os.makedirs(stack)
    host_site = sysconfig.get_paths()['purelib']
    for name in os.listdir(host_site):
        if not is_own_entry(name) and not name.endswith('.pth'):
            os.symlink(osp.join(host_site, name), osp.join(stack, name))
    with open(osp.join(site, 'zz_reused_stack.pth'), 'w') as f:
        f.write(stack + '\n')
    return python


def install_wheel(python, wheel):
    """``pip install --no-deps`` the wheel into the venv of ``python`` (pip runs from this interpreter)."""
    return run([sys.executable, '-m', 'pip', '--python', python, 'install', '--no-deps', '--quiet', wheel])
