#!/usr/bin/env bash
# 1 GPU (session 10, call 1): bisect the layer-1 A_log bf16 gradient error (GGGA medium), autotuned masked op tests,
# make smoke on the GPU.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name,memory.total --format=csv > $L/gpu.txt
mkdir -p /tmp/s8 /tmp/s5 && tar xf .dev/old_s8.tar -C /tmp/s8 && tar xf .dev/old_s5.tar -C /tmp/s5
export OMP_NUM_THREADS=2
D=.dev/alog_gpu.py
python3 $D default cpu fp32 > $L/a_default.txt 2>&1 &
MEGATRON_HYBRID_GDN_RECOMPUTE_WY=0 python3 $D recompute_wy0 > $L/a_rwy0.txt 2>&1 &
MEGATRON_HYBRID_GDN_FUSED_MIXER=0 python3 $D fused_mixer0 > $L/a_fm0.txt 2>&1 &
MEGATRON_HYBRID_GDN_FP32_PARTIALS=1 python3 $D fp32_partials > $L/a_fp32p.txt 2>&1 &
MEGATRON_HYBRID_GDN_STATE_DOTS=tf32 python3 $D state_tf32 > $L/a_tf32.txt 2>&1 &
MEGATRON_HYBRID_AUTOTUNE=0 python3 $D autotune0 > $L/a_at0.txt 2>&1 &
(cd /tmp/s8 && PYTHONPATH=/tmp/site:/tmp/s8 python3 $OLDPWD/$D old_s8_ef6c309 fp32 > $L/a_s8.txt 2>&1) &
(cd /tmp/s5 && PYTHONPATH=/tmp/site:/tmp/s5 python3 $OLDPWD/$D old_s5_b429aa2 fp32 > $L/a_s5.txt 2>&1) &
wait
echo "bisect done $((SECONDS-T0))s" >> $S
unset OMP_NUM_THREADS
MEGATRON_HYBRID_AUTOTUNE=1 timeout 200 python3 -m pytest tests/ops -m gpu -q -p no:cacheprovider -rfE -k "12x24 or small or 64x32 or 16x48 or 192x96" > $L/ops_at1_masked.txt 2>&1
echo "ops masked AT=1 rc=$? $((SECONDS-T0))s" >> $S
timeout $((560 - SECONDS)) python3 -m megatron_hybrid.smoke --out /tmp/smoke > $L/smoke.txt 2>&1
echo "smoke rc=$? $((SECONDS-T0))s" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
