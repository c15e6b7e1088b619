#!/usr/bin/env bash
# 4 GPUs (session 15, call D): issue 5's configuration, the full 32-layer 7B arms, hybrid then Olmo 3, with sessions
# 14-15's kernels (bwd_dh, dqk, fwd_o, WY backward).
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
N=model_step_4gpu_32layers_s15
timeout 570 python3 bench/model_step.py --gpus 4 --steps 8 --repeat $1 --name $N --arms olmo_hybrid_7b olmo3_7b > $L/step.txt 2>&1
echo "step rc=$? $((SECONDS-T0))s" >> $S
cp bench/results/$N.* $L/ 2>/dev/null
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
