#!/usr/bin/env bash
# Prepared for session 18 (1 H100): the forward L2-norm fold (next_l2norm_fwd_fold.patch, tree f) and with it q's norm
# backward in the wy backward (next_q_norm_bwd_fold.patch, tree fq) against HEAD (tree base).
# Build the trees first, on the CPU machine:
#   F="megatron_hybrid bench/gdn_breakdown.py bench/gdn_kernels.py bench/report.py bench/gdn_determinism.py tests"
#   git archive -o .dev/base.tar HEAD $F pyproject.toml
#   P=bench/results/gpu_check/session17
#   git apply $P/next_l2norm_fwd_fold.patch && tar cf .dev/f.tar --exclude=__pycache__ $F pyproject.toml
#   git apply $P/next_q_norm_bwd_fold.patch && tar cf .dev/fq.tar --exclude=__pycache__ $F pyproject.toml
#   git checkout megatron_hybrid tests && cp $P/{err_cmp,grad_cmp,stage_time6}.py .dev/
# Then: errors of fq on the edge cases, op fwd / fwd+bwd / peak autotuned in alternating processes, gradients of fq
# against base, and the GPU op tests on fq (one config per kernel). ~560 s.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader > $L/gpu.txt
for t in base f fq; do mkdir -p /tmp/$t && tar xf .dev/$t.tar -C /tmp/$t; done
(cd /tmp/fq && PYTHONPATH=/tmp/fq:$PYTHONPATH timeout 120 python3 $OLDPWD/.dev/err_cmp.py > $L/err_fq.txt 2>&1)
echo "errors fq rc=$? $((SECONDS-T0))s: $(tail -1 $L/err_fq.txt | cut -c1-3000)" >> $S
r=0
for t in f base fq fq base f; do
  r=$((r+1))
  [ $((SECONDS-T0)) -gt 330 ] && break
  (cd /tmp/$t && SAVE=$L/grads_$t.pt PYTHONPATH=/tmp/$t:$PYTHONPATH timeout 150 python3 $OLDPWD/.dev/stage_time6.py > $L/time_${t}_$r.txt 2>&1)
  echo "run $r $t rc=$? $((SECONDS-T0))s: $(tail -1 $L/time_${t}_$r.txt | cut -c1-2500)" >> $S
done
python3 .dev/grad_cmp.py $L/grads_fq.pt $L/grads_base.pt > $L/grad_cmp.txt 2>&1
echo "grads fq vs base: $(tail -1 $L/grad_cmp.txt)" >> $S
rm -f $L/grads_*.pt
cd /tmp/fq
export PYTHONPATH=/tmp/fq:$PYTHONPATH
MEGATRON_HYBRID_AUTOTUNE=0 timeout $((585 - SECONDS + T0)) python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE > $L/tests_ops.txt 2>&1
echo "op tests rc=$? $((SECONDS-T0))s: $(grep -E 'passed|failed' $L/tests_ops.txt | tail -1)" >> $S
cd - >/dev/null
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
