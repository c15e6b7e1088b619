#!/usr/bin/env bash
# 1 GPU (session 11, call B): GPU op tests of the new code (w kept with the states; the side stream removed) and of
# the backward state-dot modes "update,read" / "update,bf16"; then the op's time per mode and kept vs recomputed
# states, and the op against the code before this session's change (fb43703), alternating.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
mkdir -p /tmp/old && tar xf .dev/old_s10.tar -C /tmp/old
SEL="chunk_bf16 or long_t or deterministic or g0 or fp16"
MEGATRON_HYBRID_AUTOTUNE=0 timeout 260 python3 -m pytest tests/ops -m gpu -q -p no:cacheprovider -rfE > $L/ops_at0.txt 2>&1 &
MEGATRON_HYBRID_GDN_STATE_DOTS=update,read MEGATRON_HYBRID_AUTOTUNE=0 timeout 260 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "$SEL" > $L/ops_read.txt 2>&1 &
MEGATRON_HYBRID_GDN_STATE_DOTS=update,bf16 MEGATRON_HYBRID_AUTOTUNE=0 timeout 260 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "$SEL" > $L/ops_bf16.txt 2>&1 &
wait
echo "tests done $((SECONDS-T0))s: $(tail -1 $L/ops_at0.txt) | read: $(tail -1 $L/ops_read.txt) | bf16: $(tail -1 $L/ops_bf16.txt)" >> $S
timeout 150 python3 .dev/modes_time.py > $L/modes_time.txt 2>&1
echo "modes rc=$? $((SECONDS-T0))s" >> $S
timeout 70 python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --no-fla --no-check --out $L/k_new > $L/k_new.txt 2>&1
echo "kernels new rc=$? $((SECONDS-T0))s" >> $S
(cd /tmp/old && PYTHONPATH=/tmp/site:/tmp/old timeout 70 python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --no-fla --no-check --out $L/k_old > $L/k_old.txt 2>&1; echo "kernels old rc=$? $((SECONDS-T0))s" >> $S)
timeout $((580 - SECONDS)) python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --no-fla --no-check --out $L/k_new2 > $L/k_new2.txt 2>&1
echo "kernels new again rc=$? $((SECONDS-T0))s" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
