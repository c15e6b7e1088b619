#!/usr/bin/env bash
# 1 H100 (session 17, call A): base (HEAD 7687d88) against new (dvl in the input dtype, written over by dv2 in place;
# k's L2-norm backward folded into the wy backward). Errors on the GPU tests' edge cases (one config per kernel),
# then per-stage and op times, autotuned, alternating processes (base new new base), the op's gradients compared
# across trees, and the GPU op tests on new (one config per kernel).
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader > $L/gpu.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" >> $L/gpu.txt
for t in base new; do mkdir -p /tmp/$t && tar xf .dev/$t.tar -C /tmp/$t; done
for t in base new; do
  (cd /tmp/$t && PYTHONPATH=/tmp/$t:$PYTHONPATH timeout 120 python3 $OLDPWD/.dev/err_cmp.py > $L/err_$t.txt 2>&1)
  echo "errors $t rc=$? $((SECONDS-T0))s: $(tail -1 $L/err_$t.txt | cut -c1-3000)" >> $S
done
r=0
for t in base new new base; do
  r=$((r+1))
  [ $((SECONDS-T0)) -gt 400 ] && break
  (cd /tmp/$t && SAVE=$L/grads_$t.pt PYTHONPATH=/tmp/$t:$PYTHONPATH timeout 150 python3 $OLDPWD/.dev/stage_time5.py > $L/time_${t}_$r.txt 2>&1)
  echo "run $r $t rc=$? $((SECONDS-T0))s: $(tail -1 $L/time_${t}_$r.txt | cut -c1-2500)" >> $S
done
python3 .dev/grad_cmp.py $L/grads_new.pt $L/grads_base.pt > $L/grad_cmp.txt 2>&1
echo "grads new vs base: $(tail -1 $L/grad_cmp.txt)" >> $S
rm -f $L/grads_*.pt
cd /tmp/new
export PYTHONPATH=/tmp/new:$PYTHONPATH
MEGATRON_HYBRID_AUTOTUNE=0 timeout $((585 - SECONDS + T0)) python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE > $L/tests_ops.txt 2>&1
echo "op tests (first configs) rc=$? $((SECONDS-T0))s: $(grep -E 'passed|failed' $L/tests_ops.txt | tail -1)" >> $S
cd - >/dev/null
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
