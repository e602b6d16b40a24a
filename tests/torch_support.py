"""Markers for tests of features that need a newer torch than the supported floor (mmdynconv.ops.compat)."""
import pytest
import torch

from mmdynconv.ops.compat import CUSTOM_OP_REASON, HAS_CUSTOM_OP, TORCH_VERSION

# torch.library.custom_op (torch >= 2.4): torch.compile(fullgraph=True) through the ops, opcheck, torch.export and
# the FLOP counter's op handles. On older torch the ops are autograd Functions and these features are documented as
# needing torch >= 2.4.
needs_custom_ops = pytest.mark.skipif(not HAS_CUSTOM_OP, reason=CUSTOM_OP_REASON)

# Half-precision dtypes CPU autocast accepts: float16 from torch 2.2 (torch 2.1's AutocastCPU takes bfloat16 only).
AUTOCAST_DTYPES = [torch.bfloat16, pytest.param(torch.float16, marks=pytest.mark.skipif(
    TORCH_VERSION < (2, 2) and not torch.cuda.is_available(),
    reason='CPU autocast supports float16 from torch 2.2 (torch 2.1: bfloat16 only)'))]

# Tests that need mmdet / mmseg (and mmcv's compiled ops): deselected by the torch-floor run of tools/run_tests.sh,
# which has only torch, mmengine and mmcv-lite.
needs_openmmlab = pytest.mark.openmmlab

# ONNX export: torch.export keeping the custom ops whole and torch.onnx.export(dynamo=True) (torch >= 2.5).
needs_export = pytest.mark.skipif(not HAS_CUSTOM_OP or TORCH_VERSION < (2, 5),
                                  reason=f'ONNX export needs torch >= 2.5; this is torch {torch.__version__}')
