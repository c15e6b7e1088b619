#!/usr/bin/env bash
# 1 H100 (session 16, call D): the tuned launches' one-key path (ops/launch.py RememberedLaunches.tuned,
# utils.fast_tuned_launch). The GPU op tests autotuned (the path exists only with several configs), then the op's
# host time per fwd+bwd, HEAD (3d50eab, .dev/base.tar) against this tree, alternating processes, three rounds; then
# the host-side Python with launches replaced by no-ops (mock_launch.py, CPU tensors) to calibrate this host's CPU
# against the CPU machine's.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
lscpu > $L/lscpu.txt 2>&1
timeout 280 python3 -m pytest tests/ops/test_gdn_gpu.py -m gpu -q -p no:cacheprovider -rfE > $L/tests_ops.txt 2>&1
echo "op tests (autotuned) rc=$? $((SECONDS-T0))s: $(grep -E 'passed|failed' $L/tests_ops.txt | tail -1)" >> $S
mkdir -p /tmp/base && tar xf .dev/base.tar -C /tmp/base
for r in 1 2 3; do
  for t in base new; do
    [ $((SECONDS-T0)) -gt 500 ] && break 2
    D=$PWD; [ $t = base ] && D=/tmp/base
    (cd $D && PYTHONPATH=$D:$PYTHONPATH timeout 90 python3 $OLDPWD/.dev/host_time.py > $L/host_${t}_$r.txt 2>&1)
    echo "round $r $t rc=$? $((SECONDS-T0))s: $(grep -E '^H=' $L/host_${t}_$r.txt | tr '\n' ' ')" >> $S
  done
done
for i in 1 2; do timeout 60 python3 .dev/mock_launch.py 15 >> $L/mock.txt 2>&1; done
echo "mock (CPU only): $(tr '\n' ' ' < $L/mock.txt)" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
