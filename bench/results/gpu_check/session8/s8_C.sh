#!/usr/bin/env bash
# 4 x H100, session 8 call C: the host-sync GPU test; 2-rank all-gather / reduce-scatter bandwidth with NCCL's
# default channels against 16 and 32; the 7B model step (fused AdamW and the sync fix now default) with
# NCCL_MIN_NCHANNELS=32 against the defaults, both models.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
export MEGATRON_HYBRID_AUTOTUNE=0
CUDA_VISIBLE_DEVICES=0 timeout 150 python3 -m pytest tests/training/test_reliability.py -k synchronise -m gpu -q -p no:cacheprovider -rfE > $L/sync_test.txt 2>&1; echo "sync test rc=$? $((SECONDS-T0))s" >> $S
for CH in default 16 32; do
  if [ $CH = default ]; then E=""; else E="NCCL_MIN_NCHANNELS=$CH"; fi
  env $E timeout 90 python3 -m torch.distributed.run --standalone --nproc-per-node 4 bench/nccl_bandwidth.py --group-sizes 2 \
    --ops all_gather reduce_scatter --min-bytes 16777216 --max-bytes 268435456 --name nccl_bw_2rank_channels_$CH --out $L > $L/nccl_$CH.txt 2>&1
  echo "nccl $CH rc=$? $((SECONDS-T0))s" >> $S
done
timeout $((585 - SECONDS)) python3 bench/model_step.py --gpus 4 --steps 8 --name model_step_4gpu_32layers_s8_channels \
  --arms "olmo3_7b:NCCL_MIN_NCHANNELS=32" "olmo_hybrid_7b:TORCH_NCCL_HIGH_PRIORITY=1" "olmo_hybrid_7b:NCCL_MIN_NCHANNELS=32" olmo_hybrid_7b olmo3_7b \
  > $L/ms4.txt 2>&1; echo "ms4 rc=$? $((SECONDS-T0))s" >> $S
cp bench/results/model_step_4gpu_32layers_s8_channels.* $L/ 2>/dev/null
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
