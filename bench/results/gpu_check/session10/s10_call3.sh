#!/usr/bin/env bash
# 1 GPU (session 10, call 3): the WY-backward prune (autotuned GPU op tests, all shapes), make smoke autotuned, the
# op's host profile at H=15.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
python3 .dev/host_profile.py > $L/host_profile.txt 2>&1
echo "host profile rc=$? $((SECONDS-T0))s" >> $S
MEGATRON_HYBRID_AUTOTUNE=1 timeout 330 python3 -m pytest tests/ops -m gpu -q -p no:cacheprovider -rfE > $L/ops_at1.txt 2>&1
echo "ops AT=1 rc=$? $((SECONDS-T0))s" >> $S
timeout $((570 - SECONDS)) python3 -m megatron_hybrid.smoke --out /tmp/smoke > $L/smoke.txt 2>&1
echo "smoke rc=$? $((SECONDS-T0))s" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
