#!/usr/bin/env bash
# Single-node (or manually multi-node) launch with torchrun.
#
#   bash launch/torchrun.sh CONFIG [--key value ...]
#   NPROC=8 bash launch/torchrun.sh olmo_hybrid_7b --data-path /data/dolma/mix --save ckpt/hybrid
#
# Environment: NPROC (GPUs per node; default: all visible GPUs, else 1), NNODES (1), NODE_RANK (0),
# MASTER_ADDR (127.0.0.1), MASTER_PORT (29500), PYTHON (.venv/bin/python when present).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ]; then
    echo "usage: bash launch/torchrun.sh CONFIG [--key value ...]" >&2
    exit 2
fi
CONFIG="$1"; shift

PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || command -v python3 )}"
if [ -z "${NPROC:-}" ]; then
    NPROC=$(nvidia-smi -L 2>/dev/null | wc -l || true)
    [ "${NPROC:-0}" -gt 0 ] || NPROC=1
fi
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
MASTER_PORT="${MASTER_PORT:-29500}"

# Megatron's TP/SP communication overlap needs kernels queued in issue order.
export CUDA_DEVICE_MAX_CONNECTIONS="${CUDA_DEVICE_MAX_CONNECTIONS:-1}"
export TORCH_NCCL_ASYNC_ERROR_HANDLING="${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"

exec "$PYTHON" -m torch.distributed.run \
    --nproc-per-node "$NPROC" --nnodes "$NNODES" --node-rank "$NODE_RANK" \
    --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \
    -m megatron_hybrid.train --config "$CONFIG" "$@"
