#!/usr/bin/env bash
# README command 2: set up the environment if needed, lint (ruff), then run the whole test suite on CPU; without
# pytest arguments, then also the op and layer tests on the oldest supported torch (2.1.2, in .venv-floor, set up by
# tools/setup_env.sh --stack floor; MMDYNCONV_FLOOR=0 leaves that part out, MMDYNCONV_FLOOR=1 runs it with arguments).
#   bash tools/run_tests.sh [pytest args...]
# MMDYNCONV_JUNIT_DIR=DIR also writes pytest's JUnit reports there (suite.xml, floor.xml; for tools/compat_table.py).
# Each part prints its start time, so a CI log shows how long set-up, lint, suite and floor took.
# Exits non-zero when any test fails, and also when pytest collected no test at all (its exit code 5).
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
echo "[run_tests] $(date +%T) set up"
bash "$ROOT/tools/setup_env.sh"
PY="${MMDYNCONV_VENV:-$ROOT/.venv}/bin/python"
cd "$ROOT"
echo "[run_tests] $(date +%T) ruff check (configuration: ruff.toml)"
"$PY" -m ruff check .
check() {  # check RC: pytest's exit code, with "collected nothing" (5) counted as a failure
    if [ "$1" -eq 5 ]; then echo "run_tests: pytest collected no tests; treating that as a failure" >&2; return 1; fi
    return "$1"
}
JUNIT=(); FLOOR_JUNIT=()
if [ -n "${MMDYNCONV_JUNIT_DIR:-}" ]; then
    mkdir -p "$MMDYNCONV_JUNIT_DIR"
    JUNIT=(--junitxml="$MMDYNCONV_JUNIT_DIR/suite.xml"); FLOOR_JUNIT=(--junitxml="$MMDYNCONV_JUNIT_DIR/floor.xml")
fi
echo "[run_tests] $(date +%T) test suite"
rc=0
"$PY" -m pytest "${JUNIT[@]}" "$@" || rc=$?
check "$rc" || exit $?
FLOOR="${MMDYNCONV_FLOOR:-$([ $# -eq 0 ] && echo 1 || echo 0)}"
if [ "$FLOOR" = 1 ] && [ "${MMDYNCONV_STACK:-openmmlab}" != torch21 ]; then
    echo "[run_tests] $(date +%T) op and layer tests on the torch floor (torch 2.1.2, .venv-floor)"
    MMDYNCONV_VENV="$ROOT/.venv-floor" bash "$ROOT/tools/setup_env.sh" --stack floor
    rc=0
    PYTHONPATH="$ROOT" "$ROOT/.venv-floor/bin/python" -m pytest -p no:cacheprovider "${FLOOR_JUNIT[@]}" \
        tests/ops tests/layers --ignore tests/layers/test_baseline_configs.py -m "not openmmlab" || rc=$?
    check "$rc" || exit $?
fi
echo "[run_tests] $(date +%T) done"
