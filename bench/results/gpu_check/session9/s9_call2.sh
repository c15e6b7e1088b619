#!/usr/bin/env bash
# 1 x H100 (session 9, call 2): GPU op tests with the new first configs (AUTOTUNE=0) while the rest of the sweep
# compiles; then the rest of the sweep timed; then the op benchmark (ours) with AUTOTUNE=0 and 1.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name,clocks.sm,power.draw,temperature.gpu --format=csv > $L/gpus.txt
MEGATRON_HYBRID_AUTOTUNE=0 timeout 330 python3 -m pytest tests/ops -m gpu -q -p no:cacheprovider -rfE > $L/ops_tests.txt 2>&1 &
TP=$!
N=6
for i in $(seq 0 $((N-1))); do
  timeout 200 python3 bench/gdn_config_sweep.py --phase compile --shapes olmo_tp2 --stages dqk,wy_bwd,gated_norm_bwd,conv_fwd_qk --shard $i --nshards $N > $L/compile_a$i.txt 2>&1 &
  timeout 200 python3 bench/gdn_config_sweep.py --phase compile --shapes olmo --shard $i --nshards $N > $L/compile_b$i.txt 2>&1 &
done
wait $TP; echo "ops tests rc=$? $((SECONDS-T0))s" >> $S
wait
echo "compile done $((SECONDS-T0))s; first errors:" >> $S; for f in $L/compile_*.txt; do grep -m1 error $f >> $S; done
timeout $((300 - SECONDS > 60 ? 300 - SECONDS : 60)) python3 bench/gdn_config_sweep.py --phase time --shapes olmo_tp2 --stages dqk,wy_bwd,gated_norm_bwd,conv_fwd_qk --name gdn_config_sweep_tp2_rest --out $L > $L/time_a.txt 2>&1
echo "time a rc=$? $((SECONDS-T0))s" >> $S
timeout $((470 - SECONDS)) python3 bench/gdn_config_sweep.py --phase time --shapes olmo --name gdn_config_sweep_olmo --out $L > $L/time_b.txt 2>&1
echo "time b rc=$? $((SECONDS-T0))s" >> $S
for at in 0 1; do
  [ $((575 - SECONDS)) -gt 25 ] || break
  MEGATRON_HYBRID_AUTOTUNE=$at timeout $((575 - SECONDS)) python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --no-fla --out $L/k_at$at > $L/kernels_at$at.txt 2>&1
  echo "kernels autotune=$at rc=$? $((SECONDS-T0))s" >> $S
done
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
