#!/usr/bin/env bash
# 1 x H100 (session 9, call 5): layer GPU tests (never run with the RECOMPUTE_WY default), then the op benchmark
# against fla, autotuned, with the cheap tuned-config lookup (host time per call recorded).
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
MEGATRON_HYBRID_AUTOTUNE=0 timeout 200 python3 -m pytest tests/layers -m gpu -q -p no:cacheprovider -rfE > $L/layers_tests.txt 2>&1
echo "layers tests rc=$? $((SECONDS-T0))s" >> $S
timeout $((560 - SECONDS)) python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --out $L/k > $L/kernels.txt 2>&1
echo "kernels rc=$? $((SECONDS-T0))s" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
