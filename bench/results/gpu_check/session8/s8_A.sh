#!/usr/bin/env bash
# 4 x H100, session 8 call A: the session-7 GPU tests in parallel on separate GPUs, then the 7B model step with the
# session-7 defaults against them off.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=index,name --format=csv,noheader > $L/gpus.txt
export MEGATRON_HYBRID_AUTOTUNE=0
P="-q -p no:cacheprovider -rfE"
( CUDA_VISIBLE_DEVICES=0 timeout 170 python3 -m pytest tests/ops/test_loss_and_rope_gpu.py $P > $L/new_ops.txt 2>&1; echo "new ops tests rc=$? $((SECONDS-T0))s" >> $S ) &
( CUDA_VISIBLE_DEVICES=1 timeout 170 python3 -m pytest tests/training/test_reliability.py -m gpu $P > $L/fused_adam.txt 2>&1; echo "fused adam resume rc=$? $((SECONDS-T0))s" >> $S ) &
( CUDA_VISIBLE_DEVICES=2,3 timeout 170 python3 -m pytest tests/parallel/test_async_tp.py tests/parallel/test_shared_input_linear.py -m gpu $P > $L/async_tests.txt 2>&1; echo "async+shared tests rc=$? $((SECONDS-T0))s" >> $S ) &
wait
OFF="MEGATRON_HYBRID_FUSED_ROPE=0 --fused-cross-entropy false"
NOSHARE="MEGATRON_HYBRID_GDN_SHARED_GATHER=0"
timeout $((585 - SECONDS)) python3 bench/model_step.py --gpus 4 --steps 8 --name model_step_4gpu_32layers_s7_ops \
  --arms "olmo3_7b:$OFF" olmo_hybrid_7b "olmo_hybrid_7b:$NOSHARE" "olmo_hybrid_7b:$OFF $NOSHARE" olmo3_7b \
  > $L/ms4.txt 2>&1; echo "ms4 rc=$? $((SECONDS-T0))s" >> $S
cp bench/results/model_step_4gpu_32layers_s7_ops.* $L/ 2>/dev/null
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
