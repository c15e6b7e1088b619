#!/usr/bin/env bash
# 1 GPU (session 12, call C): the remembered-kernel launch path (ops/launch.py). GPU tests of every op it covers
# (one config per kernel), then host and wall time per fwd+bwd of the op at H=15 and H=30, old (94ea7b2, Triton's
# own launch) against new, alternating processes, autotuned and with one config; cProfile of the new path.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
mkdir -p /tmp/old && tar xf .dev/old_wy.tar -C /tmp/old
MEGATRON_HYBRID_AUTOTUNE=0 timeout 250 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "chunk" > $L/tests_a.txt 2>&1 &
MEGATRON_HYBRID_AUTOTUNE=0 timeout 250 python3 -m pytest tests/ops/test_gdn_gpu.py tests/ops/test_loss_and_rope_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "not chunk" > $L/tests_b.txt 2>&1 &
MEGATRON_HYBRID_AUTOTUNE=0 timeout 250 python3 -m pytest tests/layers -m gpu -q -p no:cacheprovider -rfE > $L/tests_c.txt 2>&1 &
wait
echo "tests $((SECONDS-T0))s: a $(tail -1 $L/tests_a.txt) | b $(tail -1 $L/tests_b.txt) | c $(tail -1 $L/tests_c.txt)" >> $S
for AT in 0 1; do
  for r in 1 2; do
    for v in new old; do
      P=$PWD; [ $v = old ] && P=/tmp/old
      (cd $P && MEGATRON_HYBRID_AUTOTUNE=$AT timeout 120 python3 $OLDPWD/.dev/host_time.py > $L/host_${v}_at${AT}_r$r.txt 2>&1)
      echo "host $v AT=$AT r$r rc=$? $((SECONDS-T0))s: $(tail -2 $L/host_${v}_at${AT}_r$r.txt | tr '\n' ' ')" >> $S
    done
  done
done
timeout 60 python3 .dev/host_profile.py > $L/host_profile.txt 2>&1
echo "host profile rc=$? $((SECONDS-T0))s" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
