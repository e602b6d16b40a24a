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

pytest.importorskip('triton')

SCRIPT = textwrap.dedent("""
    import itertools
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from mmdynconv.ops import ddf_triton

    POINTERS = {'_fwd': ('x_ptr', 'fc_ptr', 'fs_ptr', 'out_ptr'),
                '_bwd_x': ('g_ptr', 'fc_ptr', 'fs_ptr', 'gx_ptr'),
                '_bwd_filters': ('g_ptr', 'x_ptr', 'fc_ptr', 'fs_ptr', 'gfc_ptr', 'gfs_ptr')}
    for name, (dtype, mul, stride) in itertools.product(POINTERS, [('fp32', True, 1), ('bf16', False, 2),
                                                                   ('fp16', True, 3)]):
        fn = getattr(ddf_triton, name)
        block_c, block_p = (16, 128) if name == '_bwd_filters' else (16, 64)
        consts = dict(K=5, STRIDE=stride, DIL=2, MUL=mul, ACC=tl.float32, BLOCK_C=block_c, BLOCK_P=block_p)
        signature = {a: 'constexpr' if a in consts else (f'*{dtype}' if a in POINTERS[name] else 'i32')
                     for a in fn.arg_names}
        source = ASTSource(fn=fn, signature=signature,
                           constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()})
        compiled = triton.compile(source, target=GPUTarget('cuda', 90, 32), options=dict(num_warps=4))
        assert compiled.asm['cubin'] and 'ld.global' in compiled.asm['ptx'], name
        print(name, dtype, 'ok')
""")


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason='covered by the GPU runs of the other tests')
def test_kernels_compile_for_sm90():
    stdout = compile_for_gpu(SCRIPT)
    assert stdout.count(' ok') == 9
