"""The DDF kernels compile for a real GPU (sm_90) even where none is present.

The interpreter runs kernels as NumPy code and misses errors of the compiled path (types, layouts, unsupported
constructs). Triton can compile for a given target without a driver: this builds every kernel down to a cubin with
the ptxas bundled in the triton wheel. On a CUDA machine the other tests compile the kernels for the device itself.
"""
import pytest
import torch

triton = pytest.importorskip('triton')
tl = pytest.importorskip('triton.language')

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason='covered by the GPU runs of the other tests')

_POINTERS = {'_fwd': ('x_ptr', 'fc_ptr', 'fs_ptr', 'out_ptr'), '_bwd_x': ('g_ptr', 'fc_ptr', 'fs_ptr', 'gx_ptr'),
             '_bwd_filters': ('g_ptr', 'x_ptr', 'fc_ptr', 'fs_ptr', 'gfc_ptr', 'gfs_ptr')}


def _compile(kernel_name, dtype, constants):
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    from mmdynconv.ops import ddf_triton
    fn = getattr(ddf_triton, kernel_name)
    if not isinstance(fn, JITFunction):  # under TRITON_INTERPRET=1: the interpreter's wrapper of the function
        fn = JITFunction(fn.fn)
    signature = {name: 'constexpr' if name in constants else
                 (f'*{dtype}' if name in _POINTERS[kernel_name] else 'i32') for name in fn.arg_names}
    constexprs = {(fn.arg_names.index(k),): v for k, v in constants.items()}
    return triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs),
                          target=GPUTarget('cuda', 90, 32), options=dict(num_warps=4))


@pytest.mark.slow
@pytest.mark.parametrize('kernel_name', list(_POINTERS))
@pytest.mark.parametrize('dtype,mul,stride', [('fp32', True, 1), ('bf16', False, 2), ('fp16', True, 3)])
def test_kernel_compiles_for_sm90(kernel_name, dtype, mul, stride):
    block_c, block_p = (16, 128) if kernel_name == '_bwd_filters' else (16, 64)
    constants = dict(K=5, STRIDE=stride, DIL=2, MUL=mul, ACC=tl.float32, BLOCK_C=block_c, BLOCK_P=block_p)
    compiled = _compile(kernel_name, dtype, constants)
    assert compiled.asm['cubin'] and 'ld.global' in compiled.asm['ptx']
