#!/usr/bin/env bash
# 1 H100 (session 19, call B): the working tree (bwd_dh's kept q k^T * D load masked on tokens only; keeps_qk at a
# program per SM, so 15 heads keep it too). The GPU op tests (one config per kernel), then issue 3's benchmark
# against fla, two alternating rounds, with CUDA-graph replay times.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm --format=csv,noheader > $L/gpu.txt
MEGATRON_HYBRID_AUTOTUNE=0 timeout 260 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE > $L/tests_ops.txt 2>&1
echo "op tests rc=$? $((SECONDS-T0))s: $(grep -E 'passed|failed' $L/tests_ops.txt | tail -1)" >> $S
timeout $((585 - SECONDS + T0)) python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --rounds 2 --out $L/k > $L/kernels.txt 2>&1
echo "kernels vs fla rc=$? $((SECONDS-T0))s" >> $S
tail -4 $L/kernels.txt >> $S
grep "^|" $L/k/gdn_kernels.md >> $S 2>/dev/null
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
