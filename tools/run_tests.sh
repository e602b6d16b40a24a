#!/usr/bin/env bash
# README command 2: set up the environment if needed, lint (ruff), then run the whole test suite on CPU.
#   bash tools/run_tests.sh [pytest args...]
# Exits non-zero when any test fails, and also when pytest collected no test at all (its exit code 5).
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup_env.sh"
PY="${MMDYNCONV_VENV:-$ROOT/.venv}/bin/python"
cd "$ROOT"
echo "[run_tests] ruff check (configuration: ruff.toml)"
"$PY" -m ruff check .
rc=0
"$PY" -m pytest "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
    echo "run_tests: pytest collected no tests; treating that as a failure" >&2
    exit 1
fi
exit "$rc"
