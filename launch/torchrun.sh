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

# CUDA_DEVICE_MAX_CONNECTIONS and the TORCH_NCCL_* settings come from the trainer itself
# (megatron_hybrid/training/runtime_env.py); values exported here win.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-4}"

# Stopping (Ctrl-C, `kill`, or SIGTERM to the whole process group): the ranks get one SIGTERM,
# finish their step, save and exit 0. torchrun runs in its own session so that a group-wide signal
# does not reach it: on a signal of its own it would SIGKILL the ranks after 30 s, mid-save for a
# 7B model. Later signals are ignored (make forwards the group's signal a second time); to stop
# without saving, kill -9 the ranks.
setsid "$PYTHON" -m torch.distributed.run \
    --nproc-per-node "$NPROC" --nnodes "$NNODES" --node-rank "$NODE_RANK" \
    --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \
    -m megatron_hybrid.train --config "$CONFIG" "$@" &
LAUNCHER=$!
STOPPING=0
stop_ranks() {
    # Once only. bash runs a handler again, nested, when the signal arrives while it runs (make forwards the group's
    # SIGTERM a second time), even before the handler's first command: ignoring later signals there still let two
    # stop messages through in CI. A trap runs only between commands, so this one-command test-and-set cannot be
    # split by the nested run; the trap then ignores whatever comes later.
    (( STOPPING++ )) && return
    trap '' TERM INT
    echo "torchrun.sh: stopping; the ranks save a checkpoint first" >&2
    pkill -TERM -P "$LAUNCHER" || true
}
trap stop_ranks TERM INT
while true; do
    set +e; wait "$LAUNCHER"; rc=$?; set -e
    kill -0 "$LAUNCHER" 2>/dev/null || break  # wait returns early when a trapped signal arrives
done
exit "$rc"
