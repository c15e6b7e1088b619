#!/usr/bin/env bash
# 1 H100 (session 17, call C): issue 3's benchmark with HEAD (k's norm backward folded; q k^T * D kept for the
# reverse pass where it has programs enough), ours against fla, three alternating rounds; then the GPU tests of the
# kept q k^T * D path (forced) and the L2-norm cases.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader > $L/gpu.txt
git log --oneline -1 >> $L/gpu.txt
timeout 480 python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --rounds 3 --out $L/k > $L/kernels.txt 2>&1
echo "kernels vs fla rc=$? $((SECONDS-T0))s" >> $S
LEFT=$((580 - SECONDS + T0))
[ $LEFT -gt 30 ] && MEGATRON_HYBRID_AUTOTUNE=0 timeout $LEFT python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "kept_qk or 8192x2x2" > $L/tests_kept_qk.txt 2>&1
echo "kept_qk tests rc=$? $((SECONDS-T0))s: $(grep -E 'passed|failed' $L/tests_kept_qk.txt | tail -1)" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
