#!/usr/bin/env bash
# 1 H100 (session 15, call A): per-stage and op times (stage_time4.py: + w/u alone and fwd_h), autotuned, alternating
# processes over five trees: base (HEAD 57eb861), trA (fwd_h prefetches u, G, G_last one step ahead; w/u kernel's
# token scales on T's columns), trB (trA + fwd_h's h store after the w h products), trD (trA with only G, G_last
# prefetched), trC (trB + the WY backward pipelined, num_stages=2). Then bench/gdn_determinism.py on trC (the race
# of session 4) and on trB.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" >> $L/gpu.txt
for t in base trA trB trC trD; do mkdir -p /tmp/$t; tar xf .dev/$t.tar -C /tmp/$t; done
for r in 1 2 3; do
  for t in base trA trB trD trC; do
    [ $((SECONDS-T0)) -gt 390 ] && break 2
    (cd /tmp/$t && PYTHONPATH=/tmp/$t:$PYTHONPATH timeout 150 python3 $OLDPWD/.dev/stage_time4.py > $L/time_${t}_$r.txt 2>&1)
    echo "round $r $t rc=$? $((SECONDS-T0))s: $(tail -1 $L/time_${t}_$r.txt | cut -c1-2500)" >> $S
  done
done
for t in trC trB; do
  [ $((SECONDS-T0)) -gt 500 ] && break
  (cd /tmp/$t && PYTHONPATH=/tmp/$t:$PYTHONPATH timeout $((580 - SECONDS + T0)) python3 bench/gdn_determinism.py --reps 3 --out $L/det_$t > $L/det_$t.txt 2>&1)
  echo "determinism $t rc=$? $((SECONDS-T0))s: $(tail -4 $L/det_$t.txt | tr '\n' ' ' | cut -c1-600)" >> $S
done
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
