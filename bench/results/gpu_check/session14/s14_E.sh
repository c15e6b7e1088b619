#!/usr/bin/env bash
# 1 H100 (session 14, call E): per-stage and op times, autotuned, alternating processes: new (call D's code with the
# forward w/u kernel's T load back to its triangle mask), vo2 (new + fwd_o holding q through the V loop), vt (new with
# the WY backward's T loads back to triangle masks). Then GPU tests, one config per kernel: the chunk-op tests of vo2,
# and in parallel the layer tests of new.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
for t in vo2 vt; do mkdir -p /tmp/$t; tar xf .dev/$t.tar -C /tmp/$t; done
for r in 1 2 3; do
  for t in new vo2 vt; do
    [ $((SECONDS-T0)) -gt 330 ] && break 2
    P=$PWD; [ $t != new ] && P=/tmp/$t
    (cd $P && PYTHONPATH=$P:$PYTHONPATH timeout 100 python3 $OLDPWD/.dev/stage_time3.py > $L/time_${t}_$r.txt 2>&1)
    echo "round $r $t rc=$? $((SECONDS-T0))s: $(tail -1 $L/time_${t}_$r.txt | cut -c1-1800)" >> $S
  done
done
export MEGATRON_HYBRID_AUTOTUNE=0
(cd /tmp/vo2 && cp -r $OLDPWD/tests . && PYTHONPATH=/tmp/vo2:$PYTHONPATH timeout 240 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "chunk" > $L/tests_vo2_chunk.txt 2>&1) &
timeout 240 python3 -m pytest tests/layers -m gpu -q -p no:cacheprovider -rfE > $L/tests_new_layers.txt 2>&1 &
wait
echo "tests $((SECONDS-T0))s: vo2 chunk $(tail -1 $L/tests_vo2_chunk.txt) | new layers $(grep -E 'passed|failed' $L/tests_new_layers.txt | tail -1)" >> $S
(cd /tmp/vo2 && PYTHONPATH=/tmp/vo2:$PYTHONPATH python3 -c 'import megatron_hybrid; print("vo2 tests import", megatron_hybrid.__file__)') >> $S 2>&1
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
