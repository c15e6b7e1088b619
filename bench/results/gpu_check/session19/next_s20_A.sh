#!/usr/bin/env bash
# Prepared for session 20 (1 H100, ~3 min): is the reverse pass bound by L2 bandwidth at 30 heads? Nsight Compute on
# chunk_bwd_dh_kernel (the second fwd+bwd's launch of bench/gdn_ncu.py; one config per kernel, which at 30 heads is
# also the autotuner's pick: BV=16, 2 warps, 2 stages), at H=30 and H=15: SpeedOfLight (L2 and DRAM throughput as a
# share of peak) and the memory workload tables (L2 hit rate, bytes from L2 to the SMs). Session 19 estimated ~2.1 GB
# of L2 reads in 0.434 ms at 30 heads (~4.9 TB/s); a measured L2 throughput near its peak would make fewer, wider V
# blocks (or any scheme that reads q, k, w once per head and step) the next change, not more pipelining.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm --format=csv,noheader > $L/gpu.txt
for shape in olmo olmo_tp2; do
  MEGATRON_HYBRID_AUTOTUNE=0 timeout 240 ncu -k regex:chunk_bwd_dh --launch-skip 1 --launch-count 1 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables \
    python3 bench/gdn_ncu.py --shape $shape > $L/ncu_$shape.txt 2>&1
  echo "ncu $shape rc=$? $((SECONDS-T0))s" >> $S
  grep -E "L2 Cache Throughput|DRAM Throughput|Memory Throughput|L1/TEX Hit Rate|L2 Hit Rate|Duration" $L/ncu_$shape.txt >> $S
done
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
