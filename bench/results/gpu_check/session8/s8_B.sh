#!/usr/bin/env bash
# 4 x H100, session 8 call B: async TP (now with the GDN out-projection and the shared gather) for both models, fused
# AdamW for the hybrid, against the defaults; step 6 of every arm profiled (left out of the medians).
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
export MEGATRON_HYBRID_AUTOTUNE=0
timeout $((580 - SECONDS)) python3 bench/model_step.py --gpus 4 --steps 8 --profile-step 6 --name model_step_4gpu_32layers_s8_async_adam \
  --arms "olmo3_7b:--async-tensor-parallel true" "olmo_hybrid_7b:--async-tensor-parallel true" \
  "olmo_hybrid_7b:--fused-adam true" olmo_hybrid_7b olmo3_7b \
  > $L/ms4.txt 2>&1; echo "ms4 rc=$? $((SECONDS-T0))s" >> $S
cp bench/results/model_step_4gpu_32layers_s8_async_adam.* $L/ 2>/dev/null
mkdir -p $L/profile; for d in bench/results/profile/model_step_4gpu_32layers_s8_async_adam*; do mkdir -p $L/profile/$(basename $d); cp $d/*.md $d/*.json $L/profile/$(basename $d)/ 2>/dev/null; done
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
