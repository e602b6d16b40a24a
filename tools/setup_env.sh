#!/usr/bin/env bash
# Create (or complete) the project's virtual environment and install the tested stack into it.
# Idempotent: each step is skipped when what it installs is already importable at the pinned version.
#
#   source tools/setup_env.sh        # or: bash tools/setup_env.sh
#
# Environment: MMDYNCONV_VENV (default: <repo>/.venv), PYTHON (default: python3).
# Recipe and timings: shared/DESIGN.md section 4 (mmcv compiles from source, ~8 min on 2 cores, cached by pip).
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMDYNCONV_VENV:-$ROOT/.venv}"
C="$ROOT/requirements/constraints.txt"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup_env] creating virtual environment $VENV"
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

has torch 2.13.0 || { echo "[setup_env] torch 2.13.0 (CPU build)"; pipi torch==2.13.0; }
"$PY" -c "import pkg_resources, wheel, ninja" >/dev/null 2>&1 \
    || { echo "[setup_env] setuptools<81, wheel, ninja"; pipi "setuptools>=77.0.3,<81" wheel ninja; }
has mmengine 0.10.7 || { echo "[setup_env] mmengine"; pipi mmengine==0.10.7; }
if ! has mmcv 2.1.0 || ! "$PY" -c "import mmcv.ops" >/dev/null 2>&1; then
    echo "[setup_env] mmcv 2.1.0 with ops (compiled from source: ~8 min on 2 cores the first time, cached after)"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" pipi --no-build-isolation mmcv==2.1.0
fi
if ! has mmdet 3.3.0 || ! has mmseg 1.2.2 || ! has triton 3.7.1 || ! has pytest '' \
        || ! "$PY" -c "import ftfy, regex, pycocotools, mim, matplotlib, pytest_timeout" >/dev/null 2>&1; then
    echo "[setup_env] mmdet, mmsegmentation, openmim, triton, test tools"
    pipi -r "$ROOT/requirements/openmmlab.txt" -r "$ROOT/requirements/tests.txt"
fi
if ! (cd / && "$PY" -c "import mmdynconv, os, sys; sys.exit(os.path.dirname(os.path.dirname(mmdynconv.__file__)) != sys.argv[1])" "$ROOT") >/dev/null 2>&1; then
    echo "[setup_env] mmdynconv (editable)"
    pipi --no-build-isolation --no-deps -e "$ROOT"
fi
echo "[setup_env] ready: $VENV"
