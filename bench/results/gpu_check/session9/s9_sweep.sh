#!/usr/bin/env bash
# 1 x H100 (session 9): launch-config sweep of the GDN kernels, then the kernel benchmark against fla with what
# remains of the 575 s.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv > $L/gpus.txt
N=14
for i in $(seq 0 $((N-1))); do
  timeout 230 python3 bench/gdn_config_sweep.py --phase compile --shard $i --nshards $N > $L/compile_$i.txt 2>&1 &
done
wait
echo "compile done $((SECONDS-T0))s; errors: $(grep -c error $L/compile_*.txt | paste -sd' ')" >> $S
timeout $((470 - SECONDS)) python3 bench/gdn_config_sweep.py --phase time --out $L > $L/time.txt 2>&1
echo "time rc=$? $((SECONDS-T0))s" >> $S
if [ $((575 - SECONDS)) -gt 60 ]; then
  timeout $((575 - SECONDS)) python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --out $L/k > $L/kernels.txt 2>&1
  echo "kernels rc=$? $((SECONDS-T0))s" >> $S
fi
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
