#!/usr/bin/env bash
# 1 H100 (session 15, call B): HEAD 57eb861 + the WY backward pipelined (num_stages=2). In parallel: the GPU op tests
# and layer tests (one config per kernel: the pipelined WY backward with 4 warps), and bench/gdn_determinism.py
# (autotuned, 3 runs per stage and shape; it also fills Triton's cache for the benchmark's kernels). Then issue 3's
# benchmark, ours against fla in three alternating rounds, the Olmo shape first.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
MEGATRON_HYBRID_AUTOTUNE=0 timeout 280 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE > $L/tests_ops.txt 2>&1 &
MEGATRON_HYBRID_AUTOTUNE=0 timeout 280 python3 -m pytest tests/layers -m gpu -q -p no:cacheprovider -rfE > $L/tests_layers.txt 2>&1 &
timeout 280 python3 bench/gdn_determinism.py --reps 3 --out $L/det > $L/det.txt 2>&1 &
wait
echo "tests+det $((SECONDS-T0))s: ops $(grep -E 'passed|failed' $L/tests_ops.txt | tail -1) | layers $(grep -E 'passed|failed' $L/tests_layers.txt | tail -1)" >> $S
echo "det: $(grep -c shape $L/det.txt) shapes; nonzero: $(grep shape $L/det.txt | grep -oE "'[a-z_A-Z0-9]+': [0-9.e-]+" | grep -v ": 0.0$" | tr '\n' ' ')" >> $S
timeout $((588 - SECONDS + T0)) python3 bench/gdn_kernels.py --shapes olmo,olmo_tp2 --rounds 3 --out $L/k > $L/kernels.txt 2>&1
echo "kernels vs fla rc=$? $((SECONDS-T0))s" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
