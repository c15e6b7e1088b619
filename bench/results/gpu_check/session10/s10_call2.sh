#!/usr/bin/env bash
# 1 GPU (session 10, call 2): find the autotune config that faults at the small op-test shapes, and the layer test
# with pooled errors.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
(
for at in 0 1; do
MEGATRON_HYBRID_AUTOTUNE=$at python3 .dev/alog_gpu.py at$at cpu > $L/alog_at$at.txt 2>&1
MEGATRON_HYBRID_AUTOTUNE=$at timeout 150 python3 -m pytest tests/layers/test_models_gpu.py -q -p no:cacheprovider -rfE -k "gradients" > $L/layers_grad_at$at.txt 2>&1
echo "layers grads AT=$at rc=$? $((SECONDS-T0))s" >> $S
done
) &
CUDA_LAUNCH_BLOCKING=1 MEGATRON_HYBRID_AUTOTUNE=1 timeout 150 python3 -m pytest tests/ops/test_gdn_gpu.py -q -p no:cacheprovider -x -k "3x129x4x4x16x48" > $L/blocking.txt 2>&1
echo "blocking rc=$? $((SECONDS-T0))s" >> $S
python3 .dev/at_bisect.py list > $L/tasks.txt
echo "tasks: $(wc -l < $L/tasks.txt)" >> $S
export OMP_NUM_THREADS=1
cat $L/tasks.txt | xargs -P 8 -L 1 sh -c 'timeout 200 python3 .dev/at_bisect.py run $0 $1 2>&1 | tail -1' > $L/bisect.txt
echo "bisect done $((SECONDS-T0))s" >> $S
wait
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
