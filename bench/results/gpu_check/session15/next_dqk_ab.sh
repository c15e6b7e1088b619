#!/usr/bin/env bash
# 1 H100 (prepared in session 15 for the next session): dqk candidates against HEAD, one config per kernel
# (MEGATRON_HYBRID_AUTOTUNE=0: each tree's first), alternating processes, two rounds, outputs compared across trees on
# the GPU. Trees, each a tar of megatron_hybrid/, bench/gdn_breakdown.py, bench/gdn_kernels.py, bench/report.py:
#   .dev/base.tar (HEAD), .dev/bk64.tar (HEAD + next_dqk_bk64.patch), .dev/wk.tar (HEAD + next_dqk_whole_k.patch).
# Copy this, dqk_ab.py and dqk_cmp.py to .dev/ first. ~150 s.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
export MEGATRON_HYBRID_AUTOTUNE=0
for t in base bk64 wk; do mkdir -p /tmp/$t && tar xf .dev/$t.tar -C /tmp/$t; done
for r in 1 2; do
  for t in base bk64 wk; do
    [ $((SECONDS-T0)) -gt 200 ] && break 2
    SV=""; [ $r = 1 ] && SV=/tmp/out_$t.pt
    (cd /tmp/$t && SAVE=$SV PYTHONPATH=/tmp/$t:$PYTHONPATH timeout 80 python3 $OLDPWD/.dev/dqk_ab.py > $L/ab_${t}_$r.txt 2>&1)
    echo "round $r $t rc=$? $((SECONDS-T0))s: $(tail -1 $L/ab_${t}_$r.txt | cut -c1-700)" >> $S
  done
done
for t in bk64 wk; do echo "$t vs base:" >> $S; timeout 30 python3 .dev/dqk_cmp.py /tmp/out_$t.pt /tmp/out_base.pt >> $S 2>&1; done
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
