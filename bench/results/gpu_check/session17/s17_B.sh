#!/usr/bin/env bash
# 1 H100 (session 17, call B): base (HEAD ef5cc98: k's norm backward folded) against new (fwd_o keeps q k^T * D; the
# reverse pass forms dv2's intra-chunk part from it, no dv_local launch). Errors of new on the edge cases, stage and op
# times autotuned (new base new base), gradients compared across trees; then the GPU op tests and the layer tests
# side by side (one config per kernel), then gdn_determinism on new.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader > $L/gpu.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" >> $L/gpu.txt
for t in base new; do mkdir -p /tmp/$t && tar xf .dev/$t.tar -C /tmp/$t; done
(cd /tmp/new && PYTHONPATH=/tmp/new:$PYTHONPATH timeout 120 python3 $OLDPWD/.dev/err_cmp.py > $L/err_new.txt 2>&1)
echo "errors new rc=$? $((SECONDS-T0))s: $(tail -1 $L/err_new.txt | cut -c1-3000)" >> $S
r=0
for t in new base new base; do
  r=$((r+1))
  [ $((SECONDS-T0)) -gt 280 ] && break
  (cd /tmp/$t && SAVE=$L/grads_$t.pt PYTHONPATH=/tmp/$t:$PYTHONPATH timeout 150 python3 $OLDPWD/.dev/stage_time6.py > $L/time_${t}_$r.txt 2>&1)
  echo "run $r $t rc=$? $((SECONDS-T0))s: $(tail -1 $L/time_${t}_$r.txt | cut -c1-2500)" >> $S
done
python3 .dev/grad_cmp.py $L/grads_new.pt $L/grads_base.pt > $L/grad_cmp.txt 2>&1
echo "grads new vs base: $(tail -1 $L/grad_cmp.txt)" >> $S
rm -f $L/grads_*.pt
cd /tmp/new
export PYTHONPATH=/tmp/new:$PYTHONPATH
LEFT=$((585 - SECONDS + T0))
MEGATRON_HYBRID_AUTOTUNE=0 timeout $LEFT python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE > $L/tests_ops.txt 2>&1 &
MEGATRON_HYBRID_AUTOTUNE=0 timeout $LEFT python3 -m pytest tests/layers -m gpu -q -p no:cacheprovider -rfE > $L/tests_layers.txt 2>&1 &
wait
echo "op tests rc $((SECONDS-T0))s: $(grep -E 'passed|failed' $L/tests_ops.txt | tail -1)" >> $S
echo "layer tests $((SECONDS-T0))s: $(grep -E 'passed|failed' $L/tests_layers.txt | tail -1)" >> $S
LEFT=$((585 - SECONDS + T0))
[ $LEFT -gt 30 ] && timeout $LEFT python3 bench/gdn_determinism.py --reps 3 --out $L/det > $L/det.txt 2>&1
echo "determinism rc=$? $((SECONDS-T0))s: $(tail -4 $L/det.txt | tr '\n' ' ' | cut -c1-600)" >> $S
cd - >/dev/null
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
