"""Every Triton kernel compiles for sm_80 and sm_90 with the installed Triton's ptxas (no GPU needed), and the
compile catalogue (mmdynconv.ops.triton_aot.KERNELS) covers every kernel the ops launch."""
import os
import re
import subprocess
import sys

import pytest
from tool_runner import ROOT

from mmdynconv.ops import triton_aot
from mmdynconv.ops.backend import triton_unusable_reason

if triton_unusable_reason():
    pytest.skip(triton_unusable_reason(), allow_module_level=True)


def test_catalogue_covers_every_launched_kernel():
    for module in ('ddf_triton', 'fdconv_triton'):
        source = open(os.path.join(ROOT, 'mmdynconv', 'ops', f'{module}.py'), encoding='utf-8').read()
        launched = set(re.findall(r'(\w+)\[grid\]\(', source))
        listed = {spec.kernel for spec in triton_aot.KERNELS if spec.module == module}
        assert launched and launched == listed, f'{module}: launched {sorted(launched)}, listed {sorted(listed)}'


@pytest.mark.slow
def test_every_kernel_compiles_for_sm80_and_sm90():
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    out = subprocess.run([sys.executable, 'tools/compile_kernels.py', '--archs', '80,90', '--check'], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith('| ') and '/' in line]
    assert len(rows) == len(triton_aot.KERNELS)
    for row in rows:
        cells = [c.strip() for c in row.strip('|').split('|')][1:]
        assert len(cells) == 2 and all(re.fullmatch(r'\d+ / \d+ / \d+', c) for c in cells), row
