#!/usr/bin/env bash
# 1 H100 (session 13, call E): issue 3's benchmark with this session's code (the WY solve as its own kernel: [4,16,16] substitution, tf32x3 block products),
# ours and fla in three alternating rounds, autotuned, after a warm-up run that fills Triton's cache for ours.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
timeout 170 python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --no-fla --no-check --rounds 1 --out $L/k_warm > $L/kernels_warm.txt 2>&1
echo "kernels (warm-up) rc=$? $((SECONDS-T0))s" >> $S
timeout $((575 - SECONDS)) python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --rounds 3 --out $L/k > $L/kernels.txt 2>&1
echo "kernels vs fla rc=$? $((SECONDS-T0))s" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
