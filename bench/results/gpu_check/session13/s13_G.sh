#!/usr/bin/env bash
# 1 H100 (session 13, call G): fwd_o with one program per (chunk, head) walking V (q k^T once per chunk). GPU chunk-op
# and mixer tests (one config per kernel), then fwd_o alone and the op fwd+bwd, new vs HEAD (dd4bba1), autotuned, in
# alternating processes run from each tree's directory, three rounds.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
mkdir -p /tmp/old && tar xf .dev/old_dd4.tar -C /tmp/old
export MEGATRON_HYBRID_AUTOTUNE=0
timeout 240 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "chunk" > $L/tests_a.txt 2>&1 &
timeout 240 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "mixer" > $L/tests_b.txt 2>&1 &
wait
echo "tests $((SECONDS-T0))s: a $(tail -1 $L/tests_a.txt) | b $(tail -1 $L/tests_b.txt)" >> $S
unset MEGATRON_HYBRID_AUTOTUNE
for r in 1 2 3; do
  for t in new old; do
    P=$PWD; [ $t != new ] && P=/tmp/$t
    (cd $P && PYTHONPATH=$P:$PYTHONPATH timeout 120 python3 $OLDPWD/.dev/fwdo_time.py > $L/time_${t}_$r.txt 2>&1)
    echo "round $r $t rc=$? $((SECONDS-T0))s: $(tail -1 $L/time_${t}_$r.txt)" >> $S
  done
done
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
