#!/usr/bin/env bash
# 1 H100 (session 14, call D): loads that Triton's pipeline can prefetch. bwd_dh: the token scales on the product's
# rows and on do (k and q feed their dots as loaded); dqk: q, k, G loaded before the V loop, sum(h * dh) from a product
# h dh^T; wy_fwd / wy_bwd: T loaded with row masks (vectorised). GPU chunk-op and mixer tests (one config per kernel),
# determinism; then per-stage and op times, autotuned, alternating processes: new, HEAD (43844e1), and two wy_bwd
# variants of new (v1: T^T products as bf16 hi + lo pairs; v3: 32-wide V blocks).
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
for t in old v1 v3; do mkdir -p /tmp/$t; done
tar xf .dev/old_s14c.tar -C /tmp/old; tar xf .dev/v1.tar -C /tmp/v1; tar xf .dev/v3.tar -C /tmp/v3
export MEGATRON_HYBRID_AUTOTUNE=0
timeout 240 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "chunk" > $L/tests_a.txt 2>&1 &
timeout 240 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "mixer" > $L/tests_b.txt 2>&1 &
wait
echo "tests $((SECONDS-T0))s: chunk $(tail -1 $L/tests_a.txt) | mixer $(tail -1 $L/tests_b.txt)" >> $S
timeout 90 python3 bench/gdn_determinism.py --out $L/det > $L/determinism.txt 2>&1
echo "determinism rc=$? $((SECONDS-T0))s" >> $S
unset MEGATRON_HYBRID_AUTOTUNE
for r in 1 2 3; do
  for t in new old v1 v3; do
    [ $((SECONDS-T0)) -gt 545 ] && break 2
    P=$PWD; [ $t != new ] && P=/tmp/$t
    (cd $P && PYTHONPATH=$P:$PYTHONPATH timeout 100 python3 $OLDPWD/.dev/stage_time2.py > $L/time_${t}_$r.txt 2>&1)
    echo "round $r $t rc=$? $((SECONDS-T0))s: $(tail -1 $L/time_${t}_$r.txt | cut -c1-1500)" >> $S
  done
done
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
