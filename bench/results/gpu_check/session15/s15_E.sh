#!/usr/bin/env bash
# 1 H100 (session 15, call E, short): dqk with 64-wide K blocks (two at K=96, 8 warps) against HEAD's 32-wide ones
# (three, 4 warps, 168 registers), one config per kernel (MEGATRON_HYBRID_AUTOTUNE=0: each tree's first), alternating
# processes, two rounds; outputs compared across the trees on the GPU.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
export MEGATRON_HYBRID_AUTOTUNE=0
mkdir -p /tmp/base && tar xf .dev/base.tar -C /tmp/base
for r in 1 2; do
  for t in base new; do
    [ $((SECONDS-T0)) -gt 120 ] && break 2
    P=$PWD; [ $t = base ] && P=/tmp/base
    SV=""; [ $r = 1 ] && SV=/tmp/out_$t.pt
    (cd $P && SAVE=$SV PYTHONPATH=$P:$PYTHONPATH timeout 80 python3 $OLDPWD/.dev/dqk_ab.py > $L/ab_${t}_$r.txt 2>&1)
    echo "round $r $t rc=$? $((SECONDS-T0))s: $(tail -1 $L/ab_${t}_$r.txt | cut -c1-700)" >> $S
  done
done
timeout 30 python3 .dev/dqk_cmp.py /tmp/out_new.pt /tmp/out_base.pt >> $S 2>&1
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
