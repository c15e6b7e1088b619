#!/usr/bin/env bash
# 1 H100 (session 16, call E): issue 3's benchmark with HEAD (3d50eab), ours against fla, three alternating rounds,
# the TP=2 slice first (its row was missing from session 15's table), then the Olmo shape.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
timeout 570 python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --rounds 3 --out $L/k > $L/kernels.txt 2>&1
echo "kernels vs fla rc=$? $((SECONDS-T0))s" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
