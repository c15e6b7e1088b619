#!/usr/bin/env bash
# 1 GPU (session 12, call B): the wy backward with input-dtype dT products (and T loaded after the loops):
# GPU op tests (one config per kernel), determinism, A/B against HEAD in alternating processes, per-kernel
# breakdown of both versions, and the op's host profile at H=15.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
mkdir -p /tmp/old && tar xf .dev/old_head.tar -C /tmp/old
export MEGATRON_HYBRID_AUTOTUNE=0
timeout 260 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "chunk" > $L/tests_a.txt 2>&1 &
timeout 260 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "not chunk" > $L/tests_b.txt 2>&1 &
wait
echo "tests $((SECONDS-T0))s: a $(tail -1 $L/tests_a.txt) | b $(tail -1 $L/tests_b.txt)" >> $S
timeout 90 python3 bench/gdn_determinism.py --reps 3 --out $L > $L/determinism.txt 2>&1
echo "determinism rc=$? $((SECONDS-T0))s" >> $S
timeout 200 python3 bench/ab_versions.py --a . --b /tmp/old --rounds 2 --out $L > $L/ab.txt 2>&1
echo "ab rc=$? $((SECONDS-T0))s" >> $S
timeout 60 python3 bench/gdn_breakdown.py --shapes olmo,olmo_tp2 > $L/breakdown_new.txt 2>&1
echo "breakdown new rc=$? $((SECONDS-T0))s" >> $S
timeout 60 python3 /tmp/old/bench/gdn_breakdown.py --shapes olmo,olmo_tp2 > $L/breakdown_old.txt 2>&1
echo "breakdown old rc=$? $((SECONDS-T0))s" >> $S
timeout 40 python3 .dev/host_profile.py > $L/host_profile.txt 2>&1
echo "host profile rc=$? $((SECONDS-T0))s" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
