#!/usr/bin/env bash
# 1 H100 (session 18, call B): HEAD = both L2-norm folds (forward: k in the solve, q in fwd_o; backward: q's with k's
# in the wy backward). The mixer tests (the fused-vs-composed test now to 1e-4 plus two fused runs bit-identical),
# one config per kernel; then issue 3's benchmark against fla, three alternating rounds, with CUDA-graph replay times.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader > $L/gpu.txt
MEGATRON_HYBRID_AUTOTUNE=0 timeout 120 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "mixer or remembered" > $L/tests_mixer.txt 2>&1
echo "mixer tests rc=$? $((SECONDS-T0))s: $(grep -E 'passed|failed' $L/tests_mixer.txt | tail -1)" >> $S
timeout $((585 - SECONDS + T0)) python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --rounds 3 --out $L/k > $L/kernels.txt 2>&1
echo "kernels vs fla rc=$? $((SECONDS-T0))s" >> $S
tail -4 $L/kernels.txt >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
