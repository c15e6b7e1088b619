#!/usr/bin/env bash
# Prepared for session 19 (1 H100): ab_versions.py's CUDA-graph columns (first GPU run of them) on HEAD against HEAD
# with next_fwd_o_merge.patch (fwd_o's plain and NORM_Q branches through one block-load helper: a cleanup whose sm_90
# PTX differs, K=128 w4s2 spills 168 -> 328 B offline; keep it only if the graph times do not move), autotuned, three
# alternating rounds; then the GPU op tests on the patched tree if it is kept. Build the tree first, on the CPU machine:
#   git archive -o .dev/base.tar HEAD megatron_hybrid
#   git apply bench/results/gpu_check/session18/next_fwd_o_merge.patch
#   tar cf .dev/merge.tar --exclude=__pycache__ megatron_hybrid && git checkout megatron_hybrid
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader > $L/gpu.txt
for t in base merge; do mkdir -p /tmp/$t && tar xf .dev/$t.tar -C /tmp/$t; done
timeout 420 python3 bench/ab_versions.py --a /tmp/base --b /tmp/merge --rounds 3 --out $L/ab > $L/ab.txt 2>&1
echo "ab rc=$? $((SECONDS-T0))s" >> $S
grep "^|" $L/ab/ab_versions.md >> $S
cd /tmp/merge && cp -r $OLDPWD/tests . && PYTHONPATH=/tmp/merge:$PYTHONPATH MEGATRON_HYBRID_AUTOTUNE=0 timeout $((585 - SECONDS + T0)) python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE -k "chunk or mixer" > $L/tests_ops.txt 2>&1
echo "op tests rc=$? $((SECONDS-T0))s: $(grep -E 'passed|failed' $L/tests_ops.txt | tail -1)" >> $S
cd - >/dev/null
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
