#!/usr/bin/env bash
# 1 H100 (session 19, call C): the working tree as call B. The GPU op tests call B's timeout cut (backward
# determinism, both cases; the stage errors), then issue 3's benchmark at the Olmo shape (30 heads), two rounds.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm --format=csv,noheader > $L/gpu.txt
MEGATRON_HYBRID_AUTOTUNE=0 timeout 150 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "deterministic or g0_stage_errors" > $L/tests_ops.txt 2>&1
echo "op tests rc=$? $((SECONDS-T0))s: $(grep -E 'passed|failed' $L/tests_ops.txt | tail -1)" >> $S
timeout $((580 - SECONDS + T0)) python3 bench/gdn_kernels.py --shapes olmo --rounds 2 --out $L/k > $L/kernels.txt 2>&1
echo "kernels vs fla rc=$? $((SECONDS-T0))s" >> $S
grep "^olmo" $L/kernels.txt >> $S
grep "^|" $L/k/gdn_kernels.md >> $S 2>/dev/null
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
