#!/usr/bin/env bash
# 4 GPUs (session 19, call D): issue 5's configuration, the full 32-layer 7B arms, hybrid then Olmo 3, two rounds
# (alternating), with the host fields; the tree of session 19 (the model's mixer takes the recompute path, which this
# session's kernel change does not touch: a fresh record of the current code, last measured in session 16).
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
nvidia-smi topo -m > $L/topo.txt 2>&1
nvidia-smi -q -d POWER,CLOCK > $L/power_clock.txt 2>&1
lscpu > $L/lscpu.txt 2>&1
N=model_step_4gpu_32layers_s19
timeout 420 python3 bench/model_step.py --gpus 4 --steps 8 --repeat 2 --name $N --arms olmo_hybrid_7b olmo3_7b > $L/step.txt 2>&1
echo "step rc=$? $((SECONDS-T0))s" >> $S
cp bench/results/$N.* $L/ 2>/dev/null
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
