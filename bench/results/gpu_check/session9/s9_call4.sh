#!/usr/bin/env bash
# 4 x H100 (session 9, call 4): full 7B, TP=2 SP DP=2. The new launch configs against session 8's code (git archive
# of ef6c309 in /tmp/old) in the same call, both with one config per kernel (AUTOTUNE=0, as every earlier row), then
# Olmo 3 and the autotuned (users' default) hybrid.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
mkdir -p /tmp/old && tar xf .dev/old.tar -C /tmp/old
NEW=$PWD
timeout 200 python3 bench/model_step.py --gpus 4 --steps 8 --name model_step_4gpu_32layers_s9_configs \
  --arms "olmo_hybrid_7b:MEGATRON_HYBRID_AUTOTUNE=0" "olmo3_7b" > $L/new1.txt 2>&1; echo "new1 rc=$? $((SECONDS-T0))s" >> $S
cp bench/results/model_step_4gpu_32layers_s9_configs.* $L/ 2>/dev/null
(cd /tmp/old && PYTHONPATH=/tmp/site:/tmp/old timeout 130 python3 bench/model_step.py --gpus 4 --steps 8 \
  --name model_step_4gpu_32layers_s9_old_code --arms "olmo_hybrid_7b:MEGATRON_HYBRID_AUTOTUNE=0" > $L/old.txt 2>&1; \
  echo "old rc=$? $((SECONDS-T0))s" >> $S; cp bench/results/model_step_4gpu_32layers_s9_old_code.* $L/ 2>/dev/null)
cd $NEW
timeout $((585 - SECONDS)) python3 bench/model_step.py --gpus 4 --steps 8 --name model_step_4gpu_32layers_s9_autotuned \
  --arms "olmo_hybrid_7b:MEGATRON_HYBRID_AUTOTUNE=1" "olmo3_7b" "olmo_hybrid_7b:MEGATRON_HYBRID_AUTOTUNE=0" > $L/new2.txt 2>&1; echo "new2 rc=$? $((SECONDS-T0))s" >> $S
cp bench/results/model_step_4gpu_32layers_s9_autotuned.* $L/ 2>/dev/null
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
