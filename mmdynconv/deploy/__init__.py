"""ONNX export for models with DDF, DDF-Up and FDConv layers (docs/deploy.md). Needs ``requirements/deploy.txt``."""
from ..ops.ddf import ddf_functional
from .export import decomposition_table, export_mode, export_onnx, export_program, parity, run_onnx, torch_outputs
from .tensor_forward import TensorForward, build_model

__all__ = ['decomposition_table', 'export_mode', 'export_onnx', 'export_program', 'parity', 'run_onnx',
           'torch_outputs', 'ddf_functional', 'TensorForward', 'build_model']
