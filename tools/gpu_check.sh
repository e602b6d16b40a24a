#!/usr/bin/env bash
# One command for a CUDA machine: every Triton kernel test natively, every benchmark at the full shapes (with the DDF
# forward's bandwidth against a copy), one report (markdown + CSV). Sized for < 8 min on one H100/H200.
#
#   bash tools/gpu_check.sh [--out DIR] [--wheels DIR] [--docs]     # on a GPU
#   bash tools/gpu_check.sh --cpu-pipeline [--out DIR]              # same pipeline on CPU: tiny shapes, a couple of
#                                                                   # kernel tests through the Triton interpreter
# --wheels DIR: pure-Python wheels (mmengine, mmcv built with MMCV_WITH_OPS=0, pytest and their pure-Python needs)
# installed into DIR/../site first, for a machine that has only torch and triton. --docs: copy the report to
# docs/gpu_report.md (GPU runs only). PYTHON selects the interpreter (default python3). Exit code: non-zero when a
# kernel test failed or a step broke; the report is written either way.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMMAND="bash tools/gpu_check.sh $*"
PY="${PYTHON:-python3}"
OUT="gpu_check_results"
WHEELS=""
MODE="gpu"
DOCS=0
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        --wheels) WHEELS="$2"; shift 2 ;;
        --docs) DOCS=1; shift ;;
        --cpu-pipeline) MODE="cpu-pipeline"; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "gpu_check: unknown argument '$1' (expected --out DIR, --wheels DIR, --docs, --cpu-pipeline)" >&2
           exit 2 ;;
    esac
done

mkdir -p "$OUT/bench"
OUT="$(cd "$OUT" && pwd)"
cd "$ROOT"
: > "$OUT/steps.tsv"
FAILED=0

step() {  # step NAME COMMAND...: run, time, record the exit code
    local name="$1" start rc
    shift
    echo "== $name: $*"
    start=$(date +%s)
    "$@"
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$(( $(date +%s) - start ))" "$rc" >> "$OUT/steps.tsv"
    [ "$rc" -eq 0 ] || FAILED=1
    return 0
}

if [ -n "$WHEELS" ]; then
    step wheels "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$OUT/site" "$WHEELS"/*.whl
    export PYTHONPATH="$OUT/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT:$ROOT/tests${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# The check is about the Triton kernels: refuse up front where they cannot run (no or too old a triton).
if ! REASON=$("$PY" -c 'import sys; from mmdynconv.ops.backend import triton_unusable_reason as r; m = r()
print(m or ""); sys.exit(1 if m else 0)'); then
    echo "gpu_check: the Triton kernels cannot run in this environment: $REASON" >&2
    exit 2
fi

if [ "$MODE" = "gpu" ]; then
    unset TRITON_INTERPRET
    if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        echo "gpu_check: no CUDA device visible to torch; use --cpu-pipeline on a CPU machine" >&2
        exit 2
    fi
    DEVICE=cuda; SHAPES=full; SELECT=(); BENCH_TIMING=()
else
    export TRITON_INTERPRET=1
    DEVICE=cpu; SHAPES=small
    SELECT=(-k "expanded_and_partial_gradients or gradient_subsets")   # a couple of kernels, interpreted
    BENCH_TIMING=(--repeat 1 --warmup 0 --budget 0 --threads 1)
fi

"$PY" - > "$OUT/environment.txt" <<'PYEOF'
import os, platform, torch
try:
    import triton
    tri = triton.__version__
except ImportError:
    tri = 'not installed'
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'
print(f'torch {torch.__version__} (CUDA {torch.version.cuda}), triton {tri}, Python {platform.python_version()}')
print(f'GPU: {gpu}; CPU: {os.cpu_count()} cores; TRITON_INTERPRET={os.environ.get("TRITON_INTERPRET", "")}')
PYEOF
cat "$OUT/environment.txt"

# Kernel tests: every test file that runs the Triton backends (found by content, so the list follows the tests'
# layout; tests/benchmark, which holds this script's own test, is not a kernel test).
mapfile -t KERNEL_TESTS < <(grep -rl --include='test_*.py' --exclude-dir=benchmark \
    -e "'triton'" -e 'ddf_triton' -e 'fdconv_triton' tests | sort)
step kernel-tests "$PY" -m pytest -q -p no:cacheprovider --junitxml="$OUT/tests.xml" "${SELECT[@]}" \
    "${KERNEL_TESTS[@]}"

step benchmarks "$PY" tools/benchmark.py --all --docs '' --device "$DEVICE" --shapes "$SHAPES" \
    "${BENCH_TIMING[@]}" --out "$OUT/bench"
if [ "$MODE" = gpu ]; then   # whole models (opt-in benchmark; its rows say 'skipped' without mmdet / mmseg)
    step models "$PY" tools/benchmark.py models --device "$DEVICE" "${BENCH_TIMING[@]}" --out "$OUT/bench"
fi

step report "$PY" -m mmdynconv.benchmark.gpu_report "$OUT" "$MODE" "$COMMAND"
if [ "$DOCS" -eq 1 ] && [ "$MODE" = "gpu" ] && [ -f "$OUT/gpu_report.md" ]; then
    cp "$OUT/gpu_report.md" docs/gpu_report.md && echo "copied the report to docs/gpu_report.md"
fi
echo "gpu_check ($MODE): report in $OUT/gpu_report.md, $OUT/gpu_report.csv; failed steps: $FAILED"
exit "$FAILED"
