#!/usr/bin/env bash
# Create (or complete) a virtual environment and install one of the two tested stacks into it.
# Idempotent: each step is skipped when what it installs is already importable at the pinned version.
#
#   bash tools/setup_env.sh                  # OpenMMLab stack (mmengine / mmcv 2.1 / mmdet 3.3 / mmseg 1.2) in .venv
#   bash tools/setup_env.sh --stack onedl    # maintained onedl-* forks (same import names) in .venv-onedl
#   bash tools/setup_env.sh --stack torch21  # the oldest supported torch: torch 2.1.2 (+ its triton 2.1.0), mmcv 2.1.0
#                                            # compiled against it, mmdet 3.3, mmseg 1.2, in .venv-torch21
#   bash tools/setup_env.sh --stack floor    # torch 2.1.2, mmengine, mmcv-lite only (the op and layer tests on the
#                                            # torch floor, as tools/run_tests.sh runs them), in .venv-floor
#
# Environment: MMDYNCONV_STACK (openmmlab | onedl | torch21 | floor; --stack wins), MMDYNCONV_VENV (default:
# <repo>/.venv, .venv-onedl, .venv-torch21 or .venv-floor), PYTHON (default: python3), MAX_JOBS (mmcv compile jobs,
# default 2).
# Pins, timings and the differences between the stacks: docs/install.md. mmcv compiles from source on both stacks
# (~8-10 min on 2 cores the first time; pip caches the built wheel).
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${MMDYNCONV_STACK:-openmmlab}"
while [ $# -gt 0 ]; do
    case "$1" in
        --stack) STACK="$2"; shift 2 ;;
        --stack=*) STACK="${1#--stack=}"; shift ;;
        *) echo "setup_env.sh: unknown argument '$1' (expected --stack openmmlab|onedl|torch21|floor)" >&2; exit 2 ;;
    esac
done
case "$STACK" in
    openmmlab)
        VENV="${MMDYNCONV_VENV:-$ROOT/.venv}"; C="$ROOT/requirements/constraints.txt"
        STACK_REQ="$ROOT/requirements/openmmlab.txt"; SETUPTOOLS="setuptools>=77.0.3,<81"
        TORCH=2.13.0; TRITON=3.7.1; ENGINE=(mmengine 0.10.7); MMCV=(mmcv 2.1.0); DET=3.3.0; SEG=1.2.2 ;;
    onedl)
        VENV="${MMDYNCONV_VENV:-$ROOT/.venv-onedl}"; C="$ROOT/requirements/constraints-onedl.txt"
        STACK_REQ="$ROOT/requirements/onedl.txt"; SETUPTOOLS="setuptools>=80,<81"
        TORCH=2.13.0; TRITON=3.7.1; ENGINE=(onedl-mmengine 0.10.12); MMCV=(onedl-mmcv 2.3.6); DET=3.5.1; SEG=1.4.2 ;;
    torch21|floor)
        VENV="${MMDYNCONV_VENV:-$ROOT/.venv-$STACK}"; C="$ROOT/requirements/constraints-torch21.txt"
        STACK_REQ="$ROOT/requirements/torch21.txt"; SETUPTOOLS="setuptools>=77.0.3,<81"
        TORCH=2.1.2; TRITON=2.1.0; ENGINE=(mmengine 0.10.7); MMCV=(mmcv 2.1.0); DET=3.3.0; SEG=1.2.2 ;;
    *) echo "setup_env.sh: --stack / MMDYNCONV_STACK must be 'openmmlab', 'onedl', 'torch21' or 'floor', got '$STACK'" >&2
       exit 2 ;;
esac

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup_env] $(date +%T) creating virtual environment $VENV ($STACK stack)"
    "${PYTHON:-python3}" -m venv "$VENV"
fi
PY="$VENV/bin/python"
pipi() { "$PY" -m pip install --quiet --disable-pip-version-check -c "$C" "$@"; }
# has MODULE VERSION: is MODULE importable with __version__ == VERSION ('' = any version)?
has() { "$PY" - "$1" "$2" <<'PYEOF' >/dev/null 2>&1
import importlib, sys
m = importlib.import_module(sys.argv[1])
sys.exit(0 if not sys.argv[2] or getattr(m, '__version__', '').split('+')[0] == sys.argv[2] else 1)
PYEOF
}

has torch "$TORCH" || { echo "[setup_env] $(date +%T) torch $TORCH"; pipi "torch==$TORCH"; }
if [ "$STACK" = floor ]; then
    # torch 2.1.2 from the registry is a CUDA build (with triton 2.1.0) that runs on the CPU; mmcv-lite is the
    # pure-Python mmcv (build_conv_layer / build_upsample_layer), enough for the op and layer tests.
    if ! has mmengine "${ENGINE[1]}" || ! has mmcv "${MMCV[1]}" || ! has pytest '' \
            || ! "$PY" -c "import pytest_timeout" >/dev/null 2>&1; then
        echo "[setup_env] $(date +%T) mmengine, mmcv-lite, pytest (torch floor)"
        pipi "mmengine==${ENGINE[1]}" "mmcv-lite==${MMCV[1]}" -r "$ROOT/requirements/tests.txt"
    fi
    echo "[setup_env] $(date +%T) ready: $VENV ($STACK stack)"
    exit 0
fi
"$PY" -c "import pkg_resources, wheel, ninja" >/dev/null 2>&1 \
    || { echo "[setup_env] $(date +%T) $SETUPTOOLS, wheel, ninja"; pipi "$SETUPTOOLS" wheel ninja "packaging>=24.2"; }
has mmengine "${ENGINE[1]}" || { echo "[setup_env] $(date +%T) ${ENGINE[0]}"; pipi "${ENGINE[0]}==${ENGINE[1]}"; }
if ! has mmcv "${MMCV[1]}" || ! "$PY" -c "import mmcv.ops" >/dev/null 2>&1; then
    echo "[setup_env] $(date +%T) ${MMCV[0]} ${MMCV[1]} with ops (compiled from source: ~8-10 min on 2 cores the first time)"
    # pip caches the built wheel by source, not by the torch it was compiled against: one wheel cache per torch
    # version, or a second stack would reuse a wheel whose _ext does not load (undefined symbols). A copy already
    # installed without working ops (such a wheel, or mmcv-lite's files) is replaced.
    REINSTALL=(); has mmcv '' && REINSTALL=(--force-reinstall --no-deps)
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" pipi --no-build-isolation "${REINSTALL[@]}" \
        --cache-dir "${PIP_CACHE_DIR:-$HOME/.cache/pip}/mmcv-torch$TORCH" "${MMCV[0]}==${MMCV[1]}"
fi
if ! has mmdet "$DET" || ! has mmseg "$SEG" || ! has triton "$TRITON" || ! has pytest '' \
        || ! "$PY" -c "import ftfy, regex, pycocotools, mim, matplotlib, pytest_timeout" >/dev/null 2>&1 \
        || ! "$PY" -c "import onnx, onnxruntime, onnxscript" >/dev/null 2>&1 \
        || ! "$PY" -m ruff --version >/dev/null 2>&1; then
    echo "[setup_env] $(date +%T) mmdet $DET, mmseg $SEG, mim, triton, test tools, ONNX export tools"
    pipi -r "$STACK_REQ" -r "$ROOT/requirements/tests.txt" -r "$ROOT/requirements/deploy.txt"
fi
# (re)installed unless it is installed from this checkout with an expanded .mim/model-index.yml (not a symlink)
if ! (cd / && "$PY" -c "import mmdynconv, os, sys; sys.exit(os.path.dirname(os.path.dirname(mmdynconv.__file__)) != sys.argv[1])" "$ROOT") >/dev/null 2>&1 \
        || [ -L "$ROOT/mmdynconv/.mim/model-index.yml" ] || [ ! -f "$ROOT/mmdynconv/.mim/model-index.yml" ]; then
    echo "[setup_env] $(date +%T) mmdynconv (editable)"
    pipi --no-build-isolation --no-deps -e "$ROOT"
fi
echo "[setup_env] $(date +%T) ready: $VENV ($STACK stack)"
