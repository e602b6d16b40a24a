"""ONNX export of models containing DDF, DDF-Up and FDConv, runnable by stock ONNX Runtime (no custom-op library).

``torch.export`` captures the model with mmdynconv's custom ops kept whole; ``run_decompositions`` then replaces
each by the export form registered with it (``register_op(..., export_form=)``, e.g.
:func:`~mmdynconv.ops.ddf.ddf_functional`: standard, out-of-place ops only); the ONNX exporter
(``torch.onnx.export(..., dynamo=True)``) translates the result. FDConv layers are exported in their mode
``'export'`` (:attr:`mmdynconv.layers.FDConv.mode`), the pure-PyTorch formulation: the spectral weight's inverse
FFT, the attentions and one grouped convolution; FBM's masked FFTs. Every FFT is exported as matrix products
(``MatMul``), not ONNX ``DFT``. Shapes are static: the file runs at the example input's size and batch.
"""
import torch
import torch.utils._pytree as pytree

from ..ops.compat import EXPORT_FORMS, HAS_CUSTOM_OP, TORCH_VERSION
from .dft_matmul import fft_c2c, fft_c2r, fft_r2c

__all__ = ['decomposition_table', 'export_mode', 'check_export_support', 'export_program', 'export_onnx', 'run_onnx',
           'torch_outputs', 'parity']


def _fftfreq(n, d=1.0, *, dtype=None, layout=None, device=None, pin_memory=False):
    i = torch.arange(n, dtype=dtype or torch.get_default_dtype(), device=device)
    return torch.where(i < (n + 1) // 2, i, i - n) * (1.0 / (n * d))


def _rfftfreq(n, d=1.0, *, dtype=None, layout=None, device=None, pin_memory=False):
    return torch.arange(n // 2 + 1, dtype=dtype or torch.get_default_dtype(), device=device) * (1.0 / (n * d))


def decomposition_table():
    """``torch.export`` decompositions: the defaults, every mmdynconv custom op → its functional form, the FFTs →
    matrix products (:mod:`~mmdynconv.deploy.dft_matmul`: ONNX Runtime's ``DFT`` is less accurate), and ``fftfreq``
    / ``rfftfreq`` (used by FBM's mask construction; the ONNX exporter has no translation for them)."""
    table = torch.export.default_decompositions()
    for name, form in EXPORT_FORMS.items():   # each op's export form, registered with the op
        namespace, op = name.split('::')
        table[getattr(getattr(torch.ops, namespace), op).default] = form
    table[torch.ops.aten.fft_fftfreq.default] = _fftfreq
    table[torch.ops.aten.fft_rfftfreq.default] = _rfftfreq
    table[torch.ops.aten._fft_r2c.default] = fft_r2c
    table[torch.ops.aten._fft_c2r.default] = fft_c2r
    table[torch.ops.aten._fft_c2c.default] = fft_c2c
    return table


def export_mode(model):
    """Context manager: within the block every FDConv layer of ``model`` is in mode ``'export'`` (traceable pure
    PyTorch); on exit each layer gets its previous mode back (:func:`mmdynconv.layers.fdconv.fdconv_mode`)."""
    from ..layers.fdconv import fdconv_mode

    return fdconv_mode(model, 'export')


def check_export_support():
    """Raise ``RuntimeError`` where this torch cannot export: the ops must be custom ops (torch >= 2.4) for
    ``torch.export`` to keep them whole, and ``torch.onnx.export(dynamo=True)`` arrived in torch 2.5."""
    if not HAS_CUSTOM_OP or TORCH_VERSION < (2, 5):
        raise RuntimeError(f'ONNX export needs torch >= 2.5 (custom ops for torch.export, '
                           f'torch.onnx.export(dynamo=True)); this is torch {torch.__version__}')


def export_program(model, inputs):
    """``torch.export`` ``model(*inputs)`` in eval mode and decompose the custom ops: an ``ExportedProgram``."""
    check_export_support()
    model.eval()
    with torch.no_grad(), export_mode(model):
        # One eager call first: FBM caches its per-size masks (functools.lru_cache); filled while tracing, the cache
        # would keep fake tensors that break later eager calls. Filled eagerly, they enter the graph as constants.
        model(*inputs)
        program = torch.export.export(model, tuple(inputs), strict=False)
        return program.run_decompositions(decomposition_table())


def export_onnx(model, inputs, path, input_names=None, output_names=None, opset_version=18, optimize=False):
    """Write ``model(*inputs)`` as an ONNX file at ``path``; returns the list of ONNX op types it uses.

    ``optimize``: run the exporter's graph optimiser (onnxscript's constant folding and fusions). Off by default:
    with onnxscript 0.7.2 it turned the DDF-ResNet demo detector into a graph whose outputs are all NaN (the
    unoptimised graph matches PyTorch), and ONNX Runtime optimises the graph when it loads it anyway.

    Raises ``RuntimeError`` if the graph still holds a node outside the standard ONNX domains.
    """
    import onnx

    program = export_program(model, inputs)
    onnx_program = torch.onnx.export(program, tuple(inputs), dynamo=True, input_names=input_names,
                                     output_names=output_names, opset_version=opset_version, optimize=optimize,
                                     verbose=False)
    onnx_program.save(path)
    graph = onnx.load(path).graph
    foreign = sorted({f'{n.domain}::{n.op_type}' for n in graph.node if n.domain not in ('', 'ai.onnx')})
    if foreign:
        raise RuntimeError(f'export_onnx: {path!r} holds non-standard ONNX ops {foreign}; stock ONNX Runtime '
                           f'cannot run it')
    return sorted({n.op_type for n in graph.node})


def run_onnx(path, inputs, threads=1):
    """Run an ONNX file with ONNX Runtime's CPU provider; returns the outputs as torch tensors."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    feeds = {i.name: t.detach().cpu().numpy() for i, t in zip(session.get_inputs(), inputs)}
    return [torch.from_numpy(o) for o in session.run(None, feeds)]


def torch_outputs(model, inputs):
    """``model(*inputs)`` in eval mode without gradients, flattened to a list of tensors (ONNX output order)."""
    model.eval()
    with torch.no_grad():
        return pytree.tree_leaves(model(*inputs))


def parity(model, path, inputs):
    """Largest absolute and relative (to each output's max magnitude) difference between PyTorch and ORT."""
    ref, got = torch_outputs(model, inputs), run_onnx(path, inputs)
    if len(ref) != len(got):
        raise RuntimeError(f'parity: PyTorch gives {len(ref)} outputs, ONNX Runtime {len(got)}')
    abs_err = max(float((r.float() - g.float()).abs().max()) for r, g in zip(ref, got))
    rel_err = max(float((r.float() - g.float()).abs().max() / r.float().abs().max().clamp_min(1e-12))
                  for r, g in zip(ref, got))
    return dict(max_abs=abs_err, max_rel=rel_err, outputs=len(ref))
