#!/usr/bin/env bash
# 1 x H100 (session 9, call 3): GPU op tests with the new first configs while the last sweep stages compile; the
# sweep timed; then the op benchmark against fla, autotuned (users' default), with host time and chosen configs.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name,clocks.sm,power.draw,temperature.gpu --format=csv > $L/gpus.txt
MEGATRON_HYBRID_AUTOTUNE=0 timeout 300 python3 -m pytest tests/ops -m gpu -q -p no:cacheprovider -rfE > $L/ops_tests.txt 2>&1 &
TP=$!
ST=gated_norm_fwd,l2norm_fwd_q,l2norm_bwd_q,conv_bwd
N=8
for i in $(seq 0 $((N-1))); do
  timeout 200 python3 bench/gdn_config_sweep.py --phase compile --shapes olmo_tp2 --stages $ST --shard $i --nshards $N > $L/compile_$i.txt 2>&1 &
done
wait $TP; echo "ops tests rc=$? $((SECONDS-T0))s" >> $S
wait
echo "compile done $((SECONDS-T0))s; first errors:" >> $S; for f in $L/compile_*.txt; do grep -m1 error $f >> $S; done
timeout 150 python3 bench/gdn_config_sweep.py --phase time --shapes olmo_tp2 --stages $ST --name gdn_config_sweep_tp2_norms_conv --out $L > $L/time.txt 2>&1
echo "time rc=$? $((SECONDS-T0))s" >> $S
timeout $((580 - SECONDS)) python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --out $L/k > $L/kernels.txt 2>&1
echo "kernels rc=$? $((SECONDS-T0))s" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
