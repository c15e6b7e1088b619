#!/usr/bin/env bash
# 1 GPU (session 12, call D): the remembered-kernel launch path with Triton's (empty) hook chains no longer taken for
# hooks. GPU tests of every op it covers (one config per kernel), then host and wall time per fwd+bwd of the op at
# H=15 and H=30, old (94ea7b2) against new in alternating processes, autotuned; cProfile of the new path.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
mkdir -p /tmp/old && tar xf .dev/old_wy.tar -C /tmp/old
MEGATRON_HYBRID_AUTOTUNE=0 timeout 250 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "chunk" > $L/tests_a.txt 2>&1 &
MEGATRON_HYBRID_AUTOTUNE=0 timeout 250 python3 -m pytest tests/ops/test_gdn_gpu.py tests/ops/test_loss_and_rope_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "not chunk" > $L/tests_b.txt 2>&1 &
MEGATRON_HYBRID_AUTOTUNE=0 timeout 250 python3 -m pytest tests/layers -m gpu -q -p no:cacheprovider -rfE > $L/tests_c.txt 2>&1 &
wait
echo "tests $((SECONDS-T0))s: a $(grep -E 'passed|failed' $L/tests_a.txt | tail -1) | b $(grep -E 'passed|failed' $L/tests_b.txt | tail -1) | c $(grep -E 'passed|failed' $L/tests_c.txt | tail -1)" >> $S
python3 -m pytest tests/ops/test_fast_launch.py -q -p no:cacheprovider > $L/tests_cpu_side.txt 2>&1
echo "fast-launch unit tests on the GPU host: $(tail -1 $L/tests_cpu_side.txt)" >> $S
for r in 1 2 3; do
  for v in new old; do
    P=$PWD; [ $v = old ] && P=/tmp/old
    (cd $P && timeout 120 python3 $OLDPWD/.dev/host_time.py > $L/host_${v}_r$r.txt 2>&1)
    echo "host $v r$r rc=$? $((SECONDS-T0))s: $(tail -2 $L/host_${v}_r$r.txt | tr '\n' ' ')" >> $S
  done
done
timeout 60 python3 .dev/host_profile.py > $L/host_profile.txt 2>&1
echo "host profile rc=$? $((SECONDS-T0))s" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
