#!/usr/bin/env bash
# Distributed testing with torchrun (mmengine launcher 'pytorch'); on a machine without CUDA it uses gloo.
#   bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py args...]
set -e
CONFIG=${1:?usage: dist_test.sh CONFIG CHECKPOINT NUM_PROCS [args...]}
CHECKPOINT=${2:?usage: dist_test.sh CONFIG CHECKPOINT NUM_PROCS [args...]}
NPROC=${3:?usage: dist_test.sh CONFIG CHECKPOINT NUM_PROCS [args...]}
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON=${PYTHON:-python}
exec "$PYTHON" -m torch.distributed.run --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" --nproc_per_node="$NPROC" \
    "$DIR/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
