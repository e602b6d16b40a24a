"""Run the repository's command-line tools from tests."""
import os
import os.path as osp
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def run_tool(*args, env=None, check=True, timeout=900):
    """Run ``python tools/<args>`` from the repository root; return the CompletedProcess (stdout+stderr)."""
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{" ".join(args)} exited with {proc.returncode}:\n{proc.stdout[-6000:]}')
    return proc


def compile_for_gpu(script, timeout=600):
    """Run a Python ``script`` that compiles Triton kernels for a GPU target (with :func:`compile_for_sm90`), in a
    subprocess without ``TRITON_INTERPRET`` (which changes how Triton builds kernels) and with this checkout and
    this module importable; return its stdout, or fail with its stderr."""
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [ROOT, osp.join(ROOT, 'tests'), env.get('PYTHONPATH')]))
    result = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def compile_for_sm90(fn, pointers, consts, label):
    """Compile the ``@triton.jit`` kernel ``fn`` down to a cubin for sm_90 (no driver needed) and print
    ``<label> ok``. ``pointers``: {argument: Triton dtype such as 'fp32'}; other arguments not in ``consts`` are i32."""
    from mmdynconv.ops.triton_aot import compile_function
    compile_function(fn, pointers, consts, 90)
    print(label, 'ok')
