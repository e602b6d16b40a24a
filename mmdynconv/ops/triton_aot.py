"""Ahead-of-time compilation of every Triton kernel for a GPU architecture, without a GPU or a driver.

Triton lowers a ``@triton.jit`` kernel to PTX and assembles it with the ``ptxas`` bundled in its wheel for any
target it is given; that catches the errors the interpreter (``TRITON_INTERPRET=1``) cannot see, for GPU generations
this machine does not have. :data:`KERNELS` lists every kernel with the launch specialisations the ops use;
:func:`compile_kernel` builds one for an architecture and reads registers, spills and shared memory back from
``ptxas -v``. Works with Triton 3.0 (torch 2.4) to 3.7 (torch 2.13); run it in a process without
``TRITON_INTERPRET``. Entry point: ``python tools/compile_kernels.py``.
"""
import dataclasses
import glob
import os
import re
import subprocess
import tempfile

__all__ = ['ARCHITECTURES', 'KernelSpec', 'KERNELS', 'triton_version', 'ptxas_path', 'ptxas_supports',
           'ptxas_versions', 'compile_function', 'compile_kernel', 'compile_all']

ARCHITECTURES = (70, 75, 80, 86, 89, 90, 100, 120)


@dataclasses.dataclass(frozen=True)
class KernelSpec:
    """One kernel specialisation: ``module.kernel`` with ``pointers`` ({argument: Triton dtype}; other non-constexpr
    arguments are i32) and ``consts`` (constexpr values); ``label`` names it in reports."""
    module: str
    kernel: str
    label: str
    pointers: dict
    consts: dict
    num_warps: int = 4


def _ddf_specs():
    pointers = {'_fwd': ('x_ptr', 'fc_ptr', 'fs_ptr', 'out_ptr'),
                '_bwd_x': ('g_ptr', 'fc_ptr', 'fs_ptr', 'gx_ptr'),
                '_bwd_filters': ('g_ptr', 'x_ptr', 'fc_ptr', 'fs_ptr', 'gfc_ptr', 'gfs_ptr')}
    names = {'_fwd': 'DDF forward', '_bwd_x': 'DDF input gradient', '_bwd_filters': 'DDF filter gradients'}
    specs = []
    for kernel, args in pointers.items():
        block_c, block_p = (16, 128) if kernel == '_bwd_filters' else (16, 64)
        for dtype, stride in (('fp32', 1), ('fp16', 2), ('bf16', 1)):
            consts = dict(K=3, STRIDE=stride, DIL=1, MUL=True, ACC='fp32', BLOCK_C=block_c, BLOCK_P=block_p)
            specs.append(KernelSpec('ddf_triton', kernel, f'{names[kernel]} ({dtype}, k=3, stride {stride})',
                                    dict.fromkeys(args, dtype), consts))
    return specs


def _fdconv_specs():
    pointers = {'_assemble_fwd': ('tiles_ptr', 'lw_ptr', 'feat_ptr', 'pos_ptr', 'out_ptr', 'in_ptr', 'w_ptr'),
                '_assemble_bwd': ('grad_ptr', 'tiles_ptr', 'lw_ptr', 'feat_ptr', 'pos_ptr', 'out_ptr', 'in_ptr',
                                  'q_ptr', 'gt_ptr', 'gl_ptr')}
    names = {'_assemble_fwd': 'FDConv kernel assembly', '_assemble_bwd': 'FDConv kernel assembly backward'}
    low = {'w_ptr', 'grad_ptr'}   # the conv dtype; everything else is fp32
    specs = []
    for kernel, args in pointers.items():
        for dtype, k in (('fp32', 3), ('fp16', 3), ('bf16', 1)):
            consts = dict(K=k, KAPPA=5, HAS_POS=k > 1, FOLD=False, BLOCK=128)
            if kernel == '_assemble_bwd':
                consts.update(NEED_Q=True, NEED_TILES=True, NEED_LOGITS=True)
            specs.append(KernelSpec('fdconv_triton', kernel, f'{names[kernel]} ({dtype}, k={k})',
                                    {a: dtype if a in low else 'fp32' for a in args}, consts))
    return specs


KERNELS = tuple(_ddf_specs() + _fdconv_specs())


def triton_version():
    import triton
    return triton.__version__


def ptxas_path(arch=80):
    """The ptxas bundled with the installed Triton for ``sm_<arch>`` (Triton >= 3.3 bundles a second one,
    ``ptxas-blackwell``, which it uses from sm_100 on)."""
    import triton
    folder = os.path.join(os.path.dirname(triton.__file__), 'backends', 'nvidia', 'bin')
    names = ('ptxas-blackwell', 'ptxas') if arch >= 100 else ('ptxas',)
    for name in names:
        if glob.glob(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise FileNotFoundError(f'triton {triton.__version__} has no bundled ptxas under {folder}')


def ptxas_supports(arch):
    """Whether the bundled ptxas lists ``sm_<arch>`` among its targets (an older one aborts the process on it)."""
    path = ptxas_path(arch)
    out = subprocess.run([path, '--help'], capture_output=True, text=True).stdout
    return f'sm_{arch}' in set(re.findall(r'sm_\d+', out))


def ptxas_versions():
    """{bundled ptxas file name: CUDA release} for the installed Triton."""
    versions = {}
    for arch in (80, 100):
        path = ptxas_path(arch)
        out = subprocess.run([path, '--version'], capture_output=True, text=True, check=True).stdout
        match = re.search(r'release (\d+\.\d+)', out)
        versions[os.path.basename(path)] = match.group(1) if match else out.strip().splitlines()[-1]
    return versions


def _resolve(value):
    import triton.language as tl
    return {'fp32': tl.float32, 'fp64': tl.float64}.get(value, value) if isinstance(value, str) else value


def _source(fn, spec):
    """A Triton ``ASTSource`` of ``fn`` specialised by ``spec``, in the form the installed Triton expects."""
    import inspect

    from triton.compiler import ASTSource
    consts = {k: _resolve(v) for k, v in spec.consts.items()}

    def arg_type(a):
        return f'*{spec.pointers[a]}' if a in spec.pointers else 'i32'
    params = inspect.signature(ASTSource).parameters
    if 'constexprs' in params:   # Triton >= 3.3: signature by name, constexprs by argument path
        signature = {a: 'constexpr' if a in consts else arg_type(a) for a in fn.arg_names}
        return ASTSource(fn=fn, signature=signature,
                         constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()})
    # Triton 3.0-3.2: signature and constants by argument index (3.2 also takes constexprs in the signature)
    index = {a: i for i, a in enumerate(fn.arg_names)}
    signature = {index[a]: arg_type(a) for a in fn.arg_names if a not in consts}
    return ASTSource(fn=fn, signature=signature, constants={index[k]: v for k, v in consts.items()})


def compile_function(fn, pointers, consts, arch, num_warps=4):
    """Compile the ``@triton.jit`` function ``fn`` for ``sm_<arch>`` (``pointers``: {argument: Triton dtype}; other
    non-constexpr arguments are i32; ``consts``: constexpr values); the compiled kernel."""
    import triton
    from triton.backends.compiler import GPUTarget
    spec = KernelSpec('', fn.__name__, fn.__name__, dict(pointers), dict(consts), num_warps)
    compiled = triton.compile(_source(fn, spec), target=GPUTarget('cuda', arch, 32), options=dict(num_warps=num_warps))
    if not compiled.asm['cubin'] or 'ld.global' not in compiled.asm['ptx']:
        raise RuntimeError(f'{fn.__name__}: sm_{arch} produced no cubin / no global loads')
    return compiled


def compile_kernel(spec, arch):
    """Compile ``spec`` for ``sm_<arch>``; return a dict with ``registers``, ``spill_stores``, ``spill_loads`` (bytes)
    and ``shared`` (bytes of shared memory), or raise the compiler's error."""
    import importlib
    fn = getattr(importlib.import_module(f'mmdynconv.ops.{spec.module}'), spec.kernel)
    compiled = compile_function(fn, spec.pointers, spec.consts, arch, spec.num_warps)
    ptx = compiled.asm['ptx']
    target = re.search(r'^\.target\s+(\S+)', ptx, re.M).group(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'kernel.ptx')
        with open(path, 'w') as f:
            f.write(ptx)
        run = subprocess.run([ptxas_path(arch), f'-arch={target}', '-v', path, '-o', os.path.join(tmp, 'k.cubin')],
                             capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f'ptxas -arch={target}: {run.stderr.strip()}')
    registers = re.search(r'Used (\d+) registers', run.stderr)
    spills = re.search(r'(\d+) bytes spill stores, (\d+) bytes spill loads', run.stderr)
    metadata = compiled.metadata
    shared = metadata.shared if hasattr(metadata, 'shared') else metadata['shared']
    return dict(registers=int(registers.group(1)), spill_stores=int(spills.group(1)),
                spill_loads=int(spills.group(2)), shared=int(shared))


def compile_all(archs=ARCHITECTURES, kernels=KERNELS):
    """{(label, arch): stats dict or the error message (a str)} for every kernel and architecture."""
    results = {}
    unsupported = {a for a in archs if not ptxas_supports(a)}
    for spec in kernels:
        for arch in archs:
            if arch in unsupported:
                results[spec.label, arch] = f'the bundled {os.path.basename(ptxas_path(arch))} has no sm_{arch}'
                continue
            try:
                results[spec.label, arch] = compile_kernel(spec, arch)
            except Exception as err:  # noqa: BLE001 - reported per kernel and architecture
                message = ' '.join(str(err).split())
                results[spec.label, arch] = f'{type(err).__name__}: {message[:300]}'
    return results
