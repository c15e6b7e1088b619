#!/usr/bin/env bash
# 1 H100 (session 13, call C): the WY solve, four trees timed in alternating processes (each process run from its
# tree's directory so that its own package is imported): new (split, [4,16,16] substitution, ieee block dots),
# t3 (as new with tf32x3 block dots), split4 (split, four [16,16] chains), old (HEAD 5d32a26, fused). Then ncu of t3's
# solve, the GPU chunk-op tests on t3 (one config per kernel), and the op/mixer A/B new vs old (one config).
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
for t in old split4 t3; do mkdir -p /tmp/$t; done
tar xf .dev/old_s13.tar -C /tmp/old; tar xf .dev/split4.tar -C /tmp/split4; tar xf .dev/t3.tar -C /tmp/t3
for r in 1 2 3; do
  for t in new t3 split4 old; do
    P=$PWD; [ $t != new ] && P=/tmp/$t
    (cd $P && PYTHONPATH=$P:$PYTHONPATH timeout 100 python3 $OLDPWD/.dev/solve_time.py > $L/time_${t}_$r.txt 2>&1)
    echo "round $r $t rc=$? $((SECONDS-T0))s: $(tail -1 $L/time_${t}_$r.txt)" >> $S
  done
done
export MEGATRON_HYBRID_AUTOTUNE=0
(cd /tmp/t3 && PYTHONPATH=/tmp/t3:$PYTHONPATH timeout 100 ncu --clock-control none -k regex:chunk_wy_solve_kernel --launch-skip 1 \
  --launch-count 1 --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
  python3 bench/gdn_ncu.py --shape olmo > $L/ncu_t3.txt 2>&1)
echo "ncu t3 rc=$? $((SECONDS-T0))s" >> $S
(cd /tmp/t3 && PYTHONPATH=/tmp/t3:$PYTHONPATH timeout 200 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "chunk" > $L/tests_t3.txt 2>&1)
echo "tests t3 $((SECONDS-T0))s: $(tail -1 $L/tests_t3.txt)" >> $S
timeout 120 python3 bench/ab_versions.py --a . --b /tmp/old --rounds 2 --out $L/ab_old > $L/ab_old.txt 2>&1
echo "ab new/old rc=$? $((SECONDS-T0))s" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
