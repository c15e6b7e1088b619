#!/usr/bin/env bash
# GPU check of the gated-delta-rule kernels (for the H100 device machine). All five steps take up to 13 minutes (their
# limits), more than one 10-minute device call: pick steps with STEPS (default "tests layers bench breakdown determinism"):
#   1. the GPU op tests (one config per kernel: MEGATRON_HYBRID_AUTOTUNE=0), output in $OUT/gpu_ops_tests.txt;
#      they include test_g0_stage_errors (each backward kernel against fp64 on its own inputs; its line
#      "stage errors: ..." is printed) and test_backward_deterministic (three runs, bit-identical);
#   1b. the model-level GPU tests (tests/layers: bf16 models and gradients against fp32), $OUT/gpu_layer_tests.txt;
#   2. the benchmark against fla on the Olmo shape and its TP=2 slice, autotuned (two or three configs per kernel),
#      with the fp64 check of the autotuned kernels: $OUT/gdn_kernels.{json,md}, log $OUT/gdn_kernels.txt;
#   3. the per-kernel breakdown of the same two shapes: $OUT/gdn_breakdown.json, log $OUT/gdn_breakdown.txt.
#   4. every kernel stage run four times on identical inputs, autotuned (bench/gdn_determinism.py).
# Every step has its own time limit, so a slow step cannot starve the others; $OUT/summary.txt lists each step's exit
# status and seconds (124 = stopped by its limit). On the device machine, tar $OUT into one file: a call returns at
# most 8 files.
#
#     OUT=/path/to/dir bash bench/gpu_kernel_check.sh          (from the repository root; OUT defaults to
#                                                                bench/results/gpu_check; PY to python)
#
# Knobs: T_TESTS, T_LAYER_TESTS, T_BENCH, T_BREAKDOWN, T_DETERMINISM (seconds per step, defaults 160, 150, 300, 50, 120; the benchmark autotunes ours and fla: 130 s was too short on 2026-11-26); SHAPES (default olmo,olmo_tp2);
# MEGATRON_HYBRID_GDN_RECOMPUTE_H=1 to time the recompute path instead of the kept states.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu_check}
PY=${PY:-python}
SHAPES=${SHAPES:-olmo,olmo_tp2}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"

STEPS=${STEPS:-tests layers bench breakdown determinism}

step() {  # step KEY NAME LIMIT_S LOGFILE CMD...  (runs only when KEY is in $STEPS)
  local key=$1 name=$2 limit=$3 log=$4
  shift 4
  case " $STEPS " in *" $key "*) ;; *) echo "== $name: skipped (STEPS)" | tee -a "$SUMMARY"; return ;; esac
  local t0=$SECONDS
  echo "== $name (limit ${limit}s): $*" | tee -a "$SUMMARY"
  timeout --signal=TERM --kill-after=10 "$limit" "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  echo "   -> rc=$rc in $((SECONDS - t0))s, log $log" | tee -a "$SUMMARY"
}

{
  date -u +"%Y-%m-%d %H:%M:%S UTC"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" 2>&1
  $PY -c "import fla; print('fla', getattr(fla, '__version__', '?'))" 2>&1 | tail -1
} | tee -a "$SUMMARY"

# 1. tests: one config per kernel (compiles dominate; autotuning every test shape would not fit)
step tests "gpu op tests" "${T_TESTS:-160}" "$OUT/gpu_ops_tests.txt" \
  env MEGATRON_HYBRID_AUTOTUNE=0 $PY -m pytest tests/ops -m gpu -q -p no:cacheprovider -rfEP

# 1b. the model-level GPU tests (bf16 models against fp32, gradients per parameter): -rfE keeps the failing
#     parameter's line ("<name>: GPU bf16 ... vs CPU bf16 ...") in the log
step layers "gpu layer tests" "${T_LAYER_TESTS:-150}" "$OUT/gpu_layer_tests.txt" \
  env MEGATRON_HYBRID_AUTOTUNE=0 $PY -m pytest tests/layers -m gpu -q -p no:cacheprovider -rfE

# 2. ours vs fla, autotuned (each kernel's list has 2 or 3 configs, the best known first); fp64 check included
step bench "gdn_kernels $SHAPES" "${T_BENCH:-300}" "$OUT/gdn_kernels.txt" \
  env MEGATRON_HYBRID_AUTOTUNE=1 $PY bench/gdn_kernels.py --shapes "$SHAPES" --out "$OUT"

# 3. per-kernel times (ours only), same shapes, autotuned
step breakdown "gdn_breakdown $SHAPES" "${T_BREAKDOWN:-50}" "$OUT/gdn_breakdown.txt" \
  env MEGATRON_HYBRID_AUTOTUNE=1 $PY bench/gdn_breakdown.py --shapes "$SHAPES" --out "$OUT"

# 4. determinism of every kernel stage with the autotuned configs (a race shows as a nonzero max |diff|)
step determinism "gdn_determinism (autotuned)" "${T_DETERMINISM:-120}" "$OUT/gdn_determinism.txt" \
  env MEGATRON_HYBRID_AUTOTUNE=1 $PY bench/gdn_determinism.py --out "$OUT"

echo "== done in ${SECONDS}s" | tee -a "$SUMMARY"
grep -sE "passed|failed|error" "$OUT/gpu_ops_tests.txt" | tail -3 | tee -a "$SUMMARY"
grep -sE "stage errors" "$OUT/gpu_ops_tests.txt" | tail -1 | tee -a "$SUMMARY"
grep -sE "passed|failed|GPU bf16 .* vs CPU bf16" "$OUT/gpu_layer_tests.txt" | tail -5 | tee -a "$SUMMARY"
