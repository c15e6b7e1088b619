#!/usr/bin/env bash
# `make pretrain-7b` / `make pretrain-7b-olmo3`: one arm of the controlled 7B comparison.
#
#   NODES=64 DATA=/data/dolma/mix CKPT_DIR=/ckpt TB_DIR=/tb bash launch/pretrain.sh olmo_hybrid_7b
#   NODES=64 DATA=/data/dolma/mix CKPT_DIR=/ckpt TB_DIR=/tb bash launch/pretrain.sh olmo3_7b
#
# Both arms take the same data, schedule and token budget (launch/configs/_pretrain_7b.yaml);
# checkpoints and TensorBoard logs go to CKPT_DIR/<arm> and TB_DIR/<arm>, so `make tensorboard
# TB_DIR=...` shows the two side by side and `python -m megatron_hybrid.compare TB_DIR/olmo_hybrid_7b
# TB_DIR/olmo3_7b` compares them. With SLURM (sbatch on PATH) the job is submitted for NODES
# nodes; otherwise NODES must be 1 and it runs here with torchrun on all local GPUs.
# Extra arguments are config overrides (e.g. --micro-batch-size 2).
set -euo pipefail
cd "$(dirname "$0")/.."

ARM="${1:?usage: bash launch/pretrain.sh olmo_hybrid_7b|olmo3_7b [--key value ...]}"; shift
case "$ARM" in olmo_hybrid_7b|olmo3_7b) ;; *) echo "unknown arm $ARM (olmo_hybrid_7b | olmo3_7b)" >&2; exit 2;; esac
NODES="${NODES:-1}"
: "${DATA:?set DATA=<dataset prefix(es) or .npy files> (see launch/README.md)}"
CKPT_DIR="${CKPT_DIR:-runs/checkpoints}/$ARM"
TB_DIR="${TB_DIR:-runs/tensorboard}/$ARM"

if command -v sbatch >/dev/null 2>&1 && [ -z "${SLURM_JOB_ID:-}" ]; then
    CONFIG="$ARM" DATA="$DATA" CKPT_DIR="$CKPT_DIR" TB_DIR="$TB_DIR" \
        sbatch --nodes "$NODES" --job-name "pretrain-$ARM" --export ALL launch/slurm/pretrain.sbatch "$@"
elif [ "$NODES" -eq 1 ]; then
    mkdir -p "$CKPT_DIR" "$TB_DIR"
    exec bash launch/torchrun.sh "$ARM" --data-path "$DATA" --save "$CKPT_DIR" --tensorboard-dir "$TB_DIR" "$@"
else
    echo "NODES=$NODES needs SLURM (sbatch not found); use launch/torchrun.sh with NNODES/NODE_RANK per node" >&2
    exit 1
fi
