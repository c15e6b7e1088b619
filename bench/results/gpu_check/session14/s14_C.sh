#!/usr/bin/env bash
# 1 H100 (session 14, call C): the reverse state pass with G and dvl loaded one step ahead, and the WY backward's dG
# partials loaded up front. GPU chunk-op tests (one config per kernel) and determinism; bwd_dh, wy_bwd and the op
# fwd+bwd, new vs HEAD (43844e1), autotuned, alternating processes; ncu per-source-line stall samples of every chunk
# kernel (one config).
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
mkdir -p /tmp/old && tar xf .dev/old_s14c.tar -C /tmp/old
export MEGATRON_HYBRID_AUTOTUNE=0
timeout 240 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "chunk" > $L/tests_chunk.txt 2>&1
echo "tests $((SECONDS-T0))s: chunk $(tail -1 $L/tests_chunk.txt)" >> $S
timeout 100 python3 bench/gdn_determinism.py --out $L/det > $L/determinism.txt 2>&1
echo "determinism rc=$? $((SECONDS-T0))s" >> $S
timeout 150 ncu --clock-control none -k regex:"chunk_" --launch-skip 8 --launch-count 8 \
  --section WarpStateStats --section SourceCounters --section LaunchStats --section Occupancy --import-source yes \
  -o $L/all8 python3 bench/gdn_ncu.py --shape olmo > $L/ncu_run.txt 2>&1
echo "ncu rc=$? $((SECONDS-T0))s" >> $S
ncu --import $L/all8.ncu-rep --page source --csv --print-source cuda,sass > $L/src_cuda_sass.csv 2> $L/ncu_err.txt
ncu --import $L/all8.ncu-rep --page details > $L/ncu_details.txt 2>> $L/ncu_err.txt
gzip -f $L/src_cuda_sass.csv; rm -f $L/all8.ncu-rep
unset MEGATRON_HYBRID_AUTOTUNE
for r in 1 2 3; do
  for t in new old; do
    [ $((SECONDS-T0)) -gt 540 ] && break 2
    P=$PWD; [ $t != new ] && P=/tmp/$t
    (cd $P && PYTHONPATH=$P:$PYTHONPATH timeout 90 python3 $OLDPWD/.dev/stage_time.py > $L/time_${t}_$r.txt 2>&1)
    echo "round $r $t rc=$? $((SECONDS-T0))s: $(tail -1 $L/time_${t}_$r.txt)" >> $S
  done
done
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
