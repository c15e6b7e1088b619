#!/usr/bin/env bash
# 1 H100 (session 16, call F): bench/gdn_config_sweep.py at the Olmo shape (H=30) for the kernels changed since the
# session-9 sweep that made today's autotune lists (dqk, wy_bwd, bwd_dh, fwd_h): compile in 8 shards, then time.
# One config per kernel elsewhere (MEGATRON_HYBRID_AUTOTUNE=0). Rows print as they are timed (partial on timeout).
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
export MEGATRON_HYBRID_AUTOTUNE=0
ST=dqk,wy_bwd,bwd_dh,fwd_h
for s in 0 1 2 3 4 5 6 7; do
  timeout 170 python3 bench/gdn_config_sweep.py --phase compile --shapes olmo --stages $ST --shard $s --nshards 8 > $L/compile_$s.txt 2>&1 &
done
wait
echo "compile $((SECONDS-T0))s: $(cat $L/compile_*.txt | grep -c "'compiled': True") compiled, $(cat $L/compile_*.txt | grep -c "'error'") errors" >> $S
timeout $((400 - SECONDS + T0)) python3 bench/gdn_config_sweep.py --phase time --shapes olmo --stages $ST --name gdn_config_sweep_s16 --out $L/sweep > $L/time.txt 2>&1
echo "time rc=$? $((SECONDS-T0))s: $(grep -c "'ms'" $L/time.txt) rows timed" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
