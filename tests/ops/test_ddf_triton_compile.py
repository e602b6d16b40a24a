"""The DDF kernels compile for a real GPU (sm_90) even where none is present.

The interpreter runs kernels as NumPy code and misses errors of the compiled path (types, layouts, unsupported
constructs). Triton can compile for a given target without a driver: this builds every kernel down to a cubin with
the ptxas bundled in the triton wheel, in a subprocess without ``TRITON_INTERPRET`` (which changes how Triton
builds kernels). On a CUDA machine the other tests compile the kernels for the device itself.
"""
import textwrap

import pytest
import torch
from tool_runner import compile_for_gpu

from mmdynconv.ops.backend import triton_unusable_reason

if triton_unusable_reason():
    pytest.skip(triton_unusable_reason(), allow_module_level=True)

SCRIPT = textwrap.dedent("""
    import itertools
    import triton.language as tl
    from mmdynconv.ops import ddf_triton
    from tool_runner import compile_for_sm90

    POINTERS = {'_fwd': ('x_ptr', 'fc_ptr', 'fs_ptr', 'out_ptr'),
                '_bwd_x': ('g_ptr', 'fc_ptr', 'fs_ptr', 'gx_ptr'),
                '_bwd_filters': ('g_ptr', 'x_ptr', 'fc_ptr', 'fs_ptr', 'gfc_ptr', 'gfs_ptr')}
    for name, (dtype, mul, stride) in itertools.product(POINTERS, [('fp32', True, 1), ('bf16', False, 2),
                                                                   ('fp16', True, 3)]):
        block_c, block_p = (16, 128) if name == '_bwd_filters' else (16, 64)
        consts = dict(K=5, STRIDE=stride, DIL=2, MUL=mul, ACC=tl.float32, BLOCK_C=block_c, BLOCK_P=block_p)
        compile_for_sm90(getattr(ddf_triton, name), dict.fromkeys(POINTERS[name], dtype), consts, f'{name} {dtype}')
""")



@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason='covered by the GPU runs of the other tests')
def test_kernels_compile_for_sm90():
    stdout = compile_for_gpu(SCRIPT)
    assert stdout.count(' ok') == 9
