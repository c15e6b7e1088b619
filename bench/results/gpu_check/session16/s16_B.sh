#!/usr/bin/env bash
# 1 H100 (session 16, call B): the dqk candidates against HEAD, autotuned (call A compared first configs only),
# alternating processes, two rounds; then dqk's time per config in each tree; then bk64's fp32 fix (BK = 32 for
# 4-byte inputs) through the test that failed in call A, and the GPU op tests on bk64 with autotuning on.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
for t in base bk64 wk; do mkdir -p /tmp/$t && tar xf .dev/$t.tar -C /tmp/$t; done
for r in 1 2; do
  for t in base bk64 wk; do
    (cd /tmp/$t && PYTHONPATH=/tmp/$t:$PYTHONPATH timeout 150 python3 $OLDPWD/.dev/dqk_ab.py > $L/ab_${t}_$r.txt 2>&1)
    echo "round $r $t rc=$? $((SECONDS-T0))s: $(tail -1 $L/ab_${t}_$r.txt | cut -c1-900)" >> $S
  done
done
for t in base bk64 wk; do
  (cd /tmp/$t && PYTHONPATH=/tmp/$t:$PYTHONPATH timeout 60 python3 $OLDPWD/.dev/dqk_cfg.py > $L/cfg_$t.txt 2>&1)
  echo "configs $t rc=$? $((SECONDS-T0))s: $(tail -1 $L/cfg_$t.txt | cut -c1-900)" >> $S
done
cd /tmp/bk64
export PYTHONPATH=/tmp/bk64:$PYTHONPATH
MEGATRON_HYBRID_AUTOTUNE=0 timeout 100 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k fp16_and_fp32 > $L/test_fp32.txt 2>&1
echo "fp32 test (first config) $((SECONDS-T0))s: $(grep -E 'passed|failed' $L/test_fp32.txt | tail -1)" >> $S
timeout $((585 - SECONDS + T0)) python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE > $L/tests_ops.txt 2>&1
echo "op tests (autotuned) rc=$? $((SECONDS-T0))s: $(grep -E 'passed|failed' $L/tests_ops.txt | tail -1)" >> $S
cd - >/dev/null
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
