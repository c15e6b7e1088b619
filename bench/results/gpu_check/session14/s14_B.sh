#!/usr/bin/env bash
# 1 H100 (session 14, call B): per-source-line views of call A's ncu report (fwd_h, bwd_dh, wy_bwd), then issue 3's
# benchmark with this session's wy backward (43844e1), ours and fla in three alternating rounds, autotuned, after a
# warm-up run that fills Triton's cache for ours.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
R=.dev/state_s14A.ncu-rep
ncu --import $R --page source --csv --print-source sass > $L/src_sass.csv 2> $L/src_sass.err
ncu --import $R --page source --csv --print-source cuda,sass > $L/src_cuda_sass.csv 2> $L/src_cuda_sass.err
ncu --import $R --page source --print-source cuda --print-details all > $L/src_cuda_details.txt 2>&1
ncu --import $R --page details --print-details all --print-metric-instances details > $L/details_all.txt 2>&1
echo "ncu imports $((SECONDS-T0))s: $(wc -c $L/src_sass.csv $L/src_cuda_sass.csv $L/src_cuda_details.txt $L/details_all.txt | tr '\n' ' ')" >> $S
gzip -f $L/src_sass.csv $L/src_cuda_sass.csv
timeout 170 python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --no-fla --no-check --rounds 1 --out $L/k_warm > $L/kernels_warm.txt 2>&1
echo "kernels (warm-up) rc=$? $((SECONDS-T0))s" >> $S
timeout $((580 - SECONDS)) python3 bench/gdn_kernels.py --shapes olmo_tp2,olmo --rounds 3 --out $L/k > $L/kernels.txt 2>&1
echo "kernels vs fla rc=$? $((SECONDS-T0))s" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
