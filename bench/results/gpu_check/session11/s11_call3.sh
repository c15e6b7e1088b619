#!/usr/bin/env bash
# 2 GPUs (session 11, call 3; the 4-GPU kind was not lent): the 7B widths at 16 layers, TP=2, hybrid and Olmo 3 in
# the same call (issue 5, the code of sessions 10-11); then, one GPU each, the GPU tests autotuned (users' default)
# that had not run autotuned with the WY prune.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
N=model_step_2gpu_16layers_s11
timeout 330 python3 bench/model_step.py --gpus 2 --layers 16 --global-batch 8 --steps 8 --name $N --arms olmo_hybrid_7b olmo3_7b > $L/step.txt 2>&1
echo "step rc=$? $((SECONDS-T0))s" >> $S
cp bench/results/$N.* $L/ 2>/dev/null
R=$((575 - SECONDS))
CUDA_VISIBLE_DEVICES=0 timeout $R python3 -m pytest tests/ops -m gpu -q -p no:cacheprovider -rfE -k "split_state or mixer or deterministic" > $L/ops_at1_a.txt 2>&1 &
CUDA_VISIBLE_DEVICES=1 timeout $R python3 -m pytest tests/ops -m gpu -q -p no:cacheprovider -rfE -k "not (test_chunk_bf16 and not split_state) and not split_state and not mixer and not deterministic" > $L/ops_at1_b.txt 2>&1 &
wait
echo "tests done $((SECONDS-T0))s: a $(tail -1 $L/ops_at1_a.txt) | b $(tail -1 $L/ops_at1_b.txt)" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
