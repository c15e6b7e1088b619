#!/usr/bin/env bash
# 1 H100 (session 13, call B): the WY solve. Three trees: new (solve kernel with the four diagonal chains as one
# [4,16,16] tensor), split4 (solve kernel, four interleaved [16,16] chains), old (HEAD 5d32a26: solve fused with w,u).
# Autotuned wy_fwd and w,u times in alternating processes (3 rounds), then ncu of one solve launch in new and split4
# and of the fused kernel in old (one config).
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
mkdir -p /tmp/old && tar xf .dev/old_s13.tar -C /tmp/old
mkdir -p /tmp/split4 && tar xf .dev/split4.tar -C /tmp/split4
for r in 1 2 3; do
  for t in new split4 old; do
    P=$PWD; [ $t != new ] && P=/tmp/$t
    PYTHONPATH=$P:$PYTHONPATH timeout 100 python3 .dev/solve_time.py > $L/time_${t}_$r.txt 2>&1
    echo "round $r $t rc=$? $((SECONDS-T0))s: $(tail -1 $L/time_${t}_$r.txt)" >> $S
  done
done
export MEGATRON_HYBRID_AUTOTUNE=0
for t in new split4 old; do
  P=$PWD; [ $t != new ] && P=/tmp/$t
  K=chunk_wy_solve_kernel; [ $t = old ] && K=chunk_wy_fwd_kernel
  (cd $P && PYTHONPATH=$P:$PYTHONPATH timeout 150 ncu --clock-control none -k regex:$K --launch-skip 1 --launch-count 1 \
    --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats --section SourceCounters \
    python3 bench/gdn_ncu.py --shape olmo > $L/ncu_$t.txt 2>&1)
  echo "ncu $t rc=$? $((SECONDS-T0))s" >> $S
done
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
