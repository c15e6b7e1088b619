#!/usr/bin/env bash
# 1 x H100, session 8 call D: the kernel benchmark against fla at the Olmo shape and its TP=2 slice (autotuned), alone.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpus.txt
timeout 330 python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --out $L > $L/gdn_kernels.txt 2>&1; echo "kernels rc=$? $((SECONDS-T0))s" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
