#!/usr/bin/env bash
# 1 GPU (session 12, call G): the fused mixer's backward with the projection's gradient allocated late. Mixer GPU
# tests (one config per kernel), then the mixer's time and peak extra memory, old (f61e0c9) and new alternating,
# and Megatron-Core's GDN once (one config per kernel throughout: memory does not depend on the configs).
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
mkdir -p /tmp/old && tar xf .dev/old_launch.tar -C /tmp/old
export MEGATRON_HYBRID_AUTOTUNE=0
timeout 120 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "mixer or remembered" > $L/tests.txt 2>&1 &
timeout 120 python3 -m pytest tests/layers -m gpu -q -p no:cacheprovider -rfE -k "gradients" > $L/tests_layers.txt 2>&1 &
wait
echo "tests $((SECONDS-T0))s: $(grep -E 'passed|failed' $L/tests.txt | tail -1) | layers $(grep -E 'passed|failed' $L/tests_layers.txt | tail -1)" >> $S
for run in new_mcore old new; do
  v=${run%_mcore}; P=$PWD; [ $v = old ] && P=/tmp/old
  M=""; [ $run = new_mcore ] && M="--mcore"
  (cd $P && timeout 110 python3 $OLDPWD/.dev/mixer_mem.py $M > $L/mixer_$run.txt 2>&1)
  echo "mixer $run rc=$? $((SECONDS-T0))s: $(grep -E 'GDN mixer' $L/mixer_$run.txt | tr '\n' ' ')" >> $S
done
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
