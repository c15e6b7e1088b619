#!/usr/bin/env bash
# 1 H100 (session 14, call A): the layer GPU tests (not run since fwd_o, d275c32) and the chunk-op GPU tests on the
# wy backward's single (Bb + Bb^T) k product; determinism; ncu per-source-line stall samples of fwd_h, bwd_dh and
# wy_bwd; then wy_bwd alone and the op fwd+bwd, new vs HEAD (f3c0654), autotuned, alternating processes.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
mkdir -p /tmp/old && tar xf .dev/old_s14.tar -C /tmp/old
export MEGATRON_HYBRID_AUTOTUNE=0
timeout 280 python3 -m pytest tests/layers -m gpu -q -p no:cacheprovider -rfE > $L/tests_layers.txt 2>&1 &
timeout 280 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "chunk" > $L/tests_chunk.txt 2>&1 &
wait
echo "tests $((SECONDS-T0))s: layers $(tail -1 $L/tests_layers.txt) | chunk $(tail -1 $L/tests_chunk.txt)" >> $S
timeout 100 python3 bench/gdn_determinism.py --out $L/det > $L/determinism.txt 2>&1
echo "determinism rc=$? $((SECONDS-T0))s" >> $S
timeout 120 ncu --clock-control none -k regex:"chunk_fwd_h|chunk_bwd_dh|chunk_wy_bwd" --launch-skip 3 --launch-count 3 \
  --section WarpStateStats --section SourceCounters --section LaunchStats --import-source yes -o $L/state \
  python3 bench/gdn_ncu.py --shape olmo > $L/ncu_run.txt 2>&1
echo "ncu rc=$? $((SECONDS-T0))s" >> $S
ncu --import $L/state.ncu-rep --page source --csv --print-source cuda > $L/ncu_src_cuda.csv 2> $L/ncu_src_err.txt
ncu --import $L/state.ncu-rep --page details > $L/ncu_details.txt 2>&1
echo "ncu import $((SECONDS-T0))s" >> $S
unset MEGATRON_HYBRID_AUTOTUNE
for r in 1 2 3; do
  for t in new old; do
    [ $((SECONDS-T0)) -gt 520 ] && break 2
    P=$PWD; [ $t != new ] && P=/tmp/$t
    (cd $P && PYTHONPATH=$P:$PYTHONPATH timeout 90 python3 $OLDPWD/.dev/wyb_time.py > $L/time_${t}_$r.txt 2>&1)
    echo "round $r $t rc=$? $((SECONDS-T0))s: $(tail -1 $L/time_${t}_$r.txt)" >> $S
  done
done
rm -f $L/state.ncu-rep.bak
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
