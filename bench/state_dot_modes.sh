#!/usr/bin/env bash
# Accuracy and speed of each MEGATRON_HYBRID_GDN_STATE_DOTS mode (how the sequential state kernels multiply with
# their fp32 state; megatron_hybrid/ops/gated_delta_rule/utils.py), on one GPU:
#   1. per mode, the GPU edge-case tests (g = 0 is the hard one: no decay, the state grows), one config per kernel;
#   2. per mode, the per-kernel breakdown at the Olmo shape and its TP=2 slice, one config per kernel (the same
#      config for every mode, so the difference is the dots).
# Logs and $OUT/state_dots_<mode>/gdn_breakdown.json; $OUT/state_dots_summary.txt has the test lines and times.
#
#     OUT=/path/to/dir MODES="tf32 read update bf16" bash bench/state_dot_modes.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/state_dots}
PY=${PY:-python}
MODES=${MODES:-tf32 read update bf16}
mkdir -p "$OUT"
SUMMARY="$OUT/state_dots_summary.txt"
: >"$SUMMARY"
for mode in $MODES; do
  dir="$OUT/state_dots_$mode"
  mkdir -p "$dir"
  t0=$SECONDS
  MEGATRON_HYBRID_GDN_STATE_DOTS=$mode MEGATRON_HYBRID_AUTOTUNE=0 timeout 150 \
    $PY -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfEP -k "extremes or g0_more or 1x8192" \
    >"$dir/tests.txt" 2>&1
  echo "== $mode tests: rc=$? in $((SECONDS - t0))s: $(tail -1 "$dir/tests.txt")" | tee -a "$SUMMARY"
  grep -oE "errors over tolerance: .*" "$dir/tests.txt" | cut -c1-400 | tee -a "$SUMMARY"
  t0=$SECONDS
  MEGATRON_HYBRID_GDN_STATE_DOTS=$mode MEGATRON_HYBRID_AUTOTUNE=0 timeout 90 \
    $PY bench/gdn_breakdown.py --shapes olmo,olmo_tp2 --out "$dir" >"$dir/breakdown.txt" 2>&1
  echo "== $mode breakdown: rc=$? in $((SECONDS - t0))s" | tee -a "$SUMMARY"
  grep -E "fwd_h|bwd_dh|total|sum" "$dir/breakdown.txt" | tee -a "$SUMMARY"
done
