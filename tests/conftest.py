"""Shared pytest set-up.

Without a GPU, Triton kernels run through Triton's interpreter: ``TRITON_INTERPRET`` must be set before any module
defining ``@triton.jit`` kernels is imported, so it is set here, before this file imports mmdynconv (which every
config test needs first on the onedl stack, where mmseg:: bases resolve only after the import).

The repository root goes on ``sys.path`` (as ``python -m pytest`` from the root does): tests of the experiment code
import ``experiments.*``, which is not installed.

In-process tests use one intra-op thread: their tensors are small, and on the 2-core CI machine a second thread
made them several times slower. Subprocesses (training runs) keep torch's default.
"""
import os
import sys

import pytest
import torch
from tool_runner import ROOT, run_tool

if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
if not torch.cuda.is_available():
    os.environ.setdefault('TRITON_INTERPRET', '1')
torch.set_num_threads(1)

import mmdynconv  # noqa: E402,F401  (registers the layers and the mmdynconv:: / fork config scopes before any test)


@pytest.fixture(scope='session')
def demo_data(tmp_path_factory):
    """A small demo dataset (COCO + ADE20K formats) generated once per test session."""
    out = tmp_path_factory.mktemp('demo_data')
    run_tool('tools/generate_demo_data.py', '--out', str(out), '--seed', '3', '--num-train', '8', '--num-val', '4',
             '--size', '96', '--max-size', '40')
    return out
