#!/usr/bin/env bash
# 1 H100 (session 13, call D): the final solve (split, [4,16,16] substitution, tf32x3 block products). GPU op tests
# other than the chunk op's (which passed on this kernel code in call C) and the layer tests, one config per kernel;
# determinism; registers and spills of every compiled kernel; issue 5's layer table (autotuned).
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
export MEGATRON_HYBRID_AUTOTUNE=0
timeout 240 python3 -m pytest tests/ops -m gpu -q -p no:cacheprovider -rfE -k "not chunk" > $L/tests_b.txt 2>&1 &
timeout 240 python3 -m pytest tests/layers -m gpu -q -p no:cacheprovider -rfE > $L/tests_c.txt 2>&1 &
wait
echo "tests $((SECONDS-T0))s: b $(grep -E 'passed|failed' $L/tests_b.txt | tail -1) | c $(grep -E 'passed|failed' $L/tests_c.txt | tail -1)" >> $S
timeout 90 python3 bench/gdn_determinism.py --reps 3 --out $L > $L/determinism.txt 2>&1
echo "determinism rc=$? $((SECONDS-T0))s" >> $S
unset MEGATRON_HYBRID_AUTOTUNE
timeout 90 python3 .dev/kernel_regs.py > $L/kernel_regs.txt 2>&1
echo "kernel_regs rc=$? $((SECONDS-T0))s" >> $S
timeout $((590 - SECONDS)) python3 bench/layers.py --out $L/layers > $L/layers.txt 2>&1
echo "layers rc=$? $((SECONDS-T0))s" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
