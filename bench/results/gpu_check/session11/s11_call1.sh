#!/usr/bin/env bash
# 1 GPU (session 11, call A): the opt-in side-stream recompute (bit-identity test; mixer fwd+bwd off/on, with and
# without CUDA_DEVICE_MAX_CONNECTIONS=1 as the trainer sets it), then the kernels against fla, alternating rounds,
# on a warm Triton cache (ours alone first: autotuning compiles every config).
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
MEGATRON_HYBRID_AUTOTUNE=0 timeout 70 python3 -m pytest tests/ops/test_gdn_gpu.py -q -p no:cacheprovider -rfE -k overlapped > $L/overlap_test.txt 2>&1
echo "overlap test rc=$? $((SECONDS-T0))s" >> $S
MEGATRON_HYBRID_AUTOTUNE=0 timeout 60 python3 .dev/overlap_time.py > $L/overlap_time.txt 2>&1
echo "overlap time rc=$? $((SECONDS-T0))s" >> $S
CUDA_DEVICE_MAX_CONNECTIONS=1 MEGATRON_HYBRID_AUTOTUNE=0 timeout 40 python3 .dev/overlap_time.py > $L/overlap_time_cdmc1.txt 2>&1
echo "overlap time CDMC=1 rc=$? $((SECONDS-T0))s" >> $S
timeout 170 python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --no-fla --no-check --rounds 1 --out $L/k_warm > $L/kernels_warm.txt 2>&1
echo "kernels (warm-up) rc=$? $((SECONDS-T0))s" >> $S
timeout $((575 - SECONDS)) python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --rounds 3 --out $L/k > $L/kernels.txt 2>&1
echo "kernels vs fla rc=$? $((SECONDS-T0))s" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
