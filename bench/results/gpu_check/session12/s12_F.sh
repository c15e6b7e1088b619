#!/usr/bin/env bash
# 1 H100 (session 12, call F): issue 5's layer-level table with this session's code, autotuned (users' default), the
# attention rows now with RoPE (last run in session 5, before the models applied it in bench/layers.py).
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
timeout 545 python3 bench/layers.py --out $L/layers > $L/layers.txt 2>&1
echo "layers rc=$? $((SECONDS-T0))s" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
