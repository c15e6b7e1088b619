#!/usr/bin/env bash
# 1 GPU (session 10, call 4): the op with q/k's L2 norm folded in (one launch each way) and dbeta stored in beta's
# dtype: kernel benchmark against fla and against session 9's code in the same call; then the GPU op and layer tests.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
mkdir -p /tmp/old && tar xf .dev/old_s9.tar -C /tmp/old
timeout 150 python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --out $L/k_new > $L/kernels_new.txt 2>&1
echo "kernels new rc=$? $((SECONDS-T0))s" >> $S
(cd /tmp/old && PYTHONPATH=/tmp/site:/tmp/old timeout 100 python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --no-fla --no-check --out $L/k_old > $L/kernels_old.txt 2>&1; echo "kernels old (6ea2eef) rc=$? $((SECONDS-T0))s" >> $S)
timeout 80 python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --no-fla --no-check --out $L/k_new2 > $L/kernels_new2.txt 2>&1
echo "kernels new again rc=$? $((SECONDS-T0))s" >> $S
MEGATRON_HYBRID_AUTOTUNE=0 timeout $((490 - SECONDS)) python3 -m pytest tests/ops -m gpu -q -p no:cacheprovider -rfE > $L/ops_at0.txt 2>&1 &
MEGATRON_HYBRID_AUTOTUNE=0 timeout $((490 - SECONDS)) python3 -m pytest tests/layers -m gpu -q -p no:cacheprovider -rfE > $L/layers_at0.txt 2>&1 &
wait
echo "tests done $((SECONDS-T0))s" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
