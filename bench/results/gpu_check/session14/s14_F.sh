#!/usr/bin/env bash
# 1 H100 (session 14, call F): issue 3's benchmark with this session's kernels (wy backward's single Bb + Bb^T product,
# the prefetch-friendly loads of bwd_dh, dqk and wy_bwd, fwd_o holding q), ours and fla in three alternating rounds,
# autotuned, after a warm-up run that fills Triton's cache for ours.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
timeout 170 python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --no-fla --no-check --rounds 1 --out $L/k_warm > $L/kernels_warm.txt 2>&1
echo "kernels (warm-up) rc=$? $((SECONDS-T0))s" >> $S
timeout $((585 - SECONDS)) python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --rounds 3 --out $L/k > $L/kernels.txt 2>&1
echo "kernels vs fla rc=$? $((SECONDS-T0))s" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
