#!/usr/bin/env bash
# 1 H100 (session 18, call C), HEAD with both L2-norm folds, three jobs side by side: gdn_determinism (every stage,
# the new norm paths too, 3 runs), the layer tests (one config per kernel), and the fused mixer against the composed
# ops (per-output differences, one config per kernel and autotuned; then the test with its 1e-3 bound).
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader > $L/gpu.txt
(MEGATRON_HYBRID_AUTOTUNE=0 timeout 420 python3 -m pytest tests/layers -m gpu -q -p no:cacheprovider -rfE > $L/tests_layers.txt 2>&1
 echo "layer tests rc=$? $((SECONDS-T0))s: $(grep -E 'passed|failed' $L/tests_layers.txt | tail -1)" >> $S) &
(MEGATRON_HYBRID_AUTOTUNE=0 timeout 150 python3 .dev/mixer_diffs.py > $L/mixer_one_config.txt 2>&1
 echo "mixer diffs, one config rc=$? $((SECONDS-T0))s: $(tail -1 $L/mixer_one_config.txt)" >> $S
 MEGATRON_HYBRID_AUTOTUNE=0 timeout 100 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k mixer_fused_equals > $L/tests_mixer.txt 2>&1
 echo "mixer test rc=$? $((SECONDS-T0))s: $(grep -E 'passed|failed' $L/tests_mixer.txt | tail -1)" >> $S
 MEGATRON_HYBRID_AUTOTUNE=1 timeout $((440 - SECONDS + T0)) python3 .dev/mixer_diffs.py > $L/mixer_autotuned.txt 2>&1
 echo "mixer diffs, autotuned rc=$? $((SECONDS-T0))s: $(tail -1 $L/mixer_autotuned.txt)" >> $S) &
timeout 440 python3 bench/gdn_determinism.py --reps 3 --out $L/det > $L/det.txt 2>&1
echo "determinism rc=$? $((SECONDS-T0))s" >> $S
wait
grep "^{" $L/det.txt >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
