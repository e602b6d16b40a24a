#!/usr/bin/env bash
# Distributed training with torchrun (mmengine launcher 'pytorch'); on a machine without CUDA it uses gloo.
#   bash tools/dist_train.sh CONFIG NUM_PROCS [train.py args...]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT as for torchrun.
set -e
CONFIG=${1:?usage: dist_train.sh CONFIG NUM_PROCS [args...]}
NPROC=${2:?usage: dist_train.sh CONFIG NUM_PROCS [args...]}
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON=${PYTHON:-python}
exec "$PYTHON" -m torch.distributed.run --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" --nproc_per_node="$NPROC" \
    "$DIR/train.py" "$CONFIG" --launcher pytorch "${@:3}"
