#!/usr/bin/env bash
# 1 H100 (session 19, call A). Tree new = the working tree (bwd_dh's kept q k^T * D masked on tokens only, so Triton
# pipelines its load; gdn_config_sweep's bwd_dh_kept_qk stage); tree base = HEAD (ec3de00's kernels).
# Built on the CPU machine: F="megatron_hybrid bench/gdn_breakdown.py bench/gdn_kernels.py bench/report.py";
# git archive -o .dev/base.tar HEAD $F; tar cf .dev/new.tar --exclude=__pycache__ $F
# 1) the config sweep's compile phase for bwd_dh_kept_qk (8 processes); 2) .dev/dh_ab.py in alternating processes
# (base new new base), outputs compared bitwise; 3) the sweep's time phase; 4) the GPU op tests that take the path.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm --format=csv,noheader > $L/gpu.txt
for t in base new; do mkdir -p /tmp/$t && tar xf .dev/$t.tar -C /tmp/$t; done
for i in 0 1 2 3 4 5 6 7; do
  timeout 170 python3 bench/gdn_config_sweep.py --phase compile --stages bwd_dh_kept_qk --shard $i --nshards 8 > $L/sweep_compile_$i.txt 2>&1 &
done
wait
echo "sweep compile $((SECONDS-T0))s: $(grep -c compiled $L/sweep_compile_*.txt | tr '\n' ' ')" >> $S
r=0
for t in base new new base; do
  r=$((r+1))
  (cd /tmp/$t && SAVE=$L/out_$t.pt PYTHONPATH=/tmp/$t:$PYTHONPATH timeout 150 python3 $OLDPWD/.dev/dh_ab.py > $L/ab_${t}_$r.txt 2>&1)
  echo "run $r $t rc=$? $((SECONDS-T0))s: $(tail -1 $L/ab_${t}_$r.txt | cut -c1-3000)" >> $S
done
python3 - $L/out_new.pt $L/out_base.pt >> $S 2>&1 <<'PY'
import sys, torch
a, b = torch.load(sys.argv[1]), torch.load(sys.argv[2])
print("new vs base, kept path bitwise:", {k: [torch.equal(x, y) for x, y in zip(a[k], b[k])] for k in a})
PY
rm -f $L/out_*.pt
timeout 150 python3 bench/gdn_config_sweep.py --phase time --stages bwd_dh_kept_qk --out $L/sweep > $L/sweep_time.txt 2>&1
echo "sweep time rc=$? $((SECONDS-T0))s" >> $S
grep "^|" $L/sweep/*.md >> $S 2>/dev/null
MEGATRON_HYBRID_AUTOTUNE=0 timeout $((585 - SECONDS + T0)) python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "kept_qk or deterministic or varlen or extremes" > $L/tests_ops.txt 2>&1
echo "op tests rc=$? $((SECONDS-T0))s: $(grep -E 'passed|failed' $L/tests_ops.txt | tail -1)" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
