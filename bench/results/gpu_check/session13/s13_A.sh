#!/usr/bin/env bash
# 1 H100 (session 13, call A): the WY solve as its own kernel and dP once per chunk (dv_local -> dqk), both new in
# the op. GPU op and layer tests with one config per kernel (also the first GPU run of session 12's last three
# commits), determinism, per-kernel breakdown (autotuned), dqk_variants, and A/B in alternating processes (one config
# per kernel): new vs HEAD (5d32a26), and new vs new-without-dP.
set -u
T0=$SECONDS
L=$OUT/logs; mkdir -p $L; S=$L/summary.txt
nvidia-smi --query-gpu=name --format=csv,noheader > $L/gpu.txt
mkdir -p /tmp/old && tar xf .dev/old_s13.tar -C /tmp/old
mkdir -p /tmp/nodp && tar cf - megatron_hybrid bench layer_specs | tar xf - -C /tmp/nodp
sed -i 's/^DP_ONCE = True$/DP_ONCE = False/' /tmp/nodp/megatron_hybrid/ops/gated_delta_rule/chunk.py
grep -c "^DP_ONCE = False" /tmp/nodp/megatron_hybrid/ops/gated_delta_rule/chunk.py >> $S
export MEGATRON_HYBRID_AUTOTUNE=0
timeout 300 python3 -m pytest tests/ops -m gpu -q -p no:cacheprovider -rfE -k "chunk" > $L/tests_a.txt 2>&1 &
timeout 300 python3 -m pytest tests/ops -m gpu -q -p no:cacheprovider -rfE -k "not chunk" > $L/tests_b.txt 2>&1 &
timeout 300 python3 -m pytest tests/layers -m gpu -q -p no:cacheprovider -rfE > $L/tests_c.txt 2>&1 &
wait
echo "tests $((SECONDS-T0))s: a $(tail -1 $L/tests_a.txt) | b $(tail -1 $L/tests_b.txt) | c $(tail -1 $L/tests_c.txt)" >> $S
timeout 90 python3 bench/gdn_determinism.py --reps 3 --out $L > $L/determinism.txt 2>&1
echo "determinism rc=$? $((SECONDS-T0))s" >> $S
timeout 120 python3 bench/ab_versions.py --a . --b /tmp/old --rounds 2 --out $L/ab_old > $L/ab_old.txt 2>&1
echo "ab new/old rc=$? $((SECONDS-T0))s" >> $S
timeout 120 python3 bench/ab_versions.py --a . --b /tmp/nodp --rounds 2 --out $L/ab_nodp > $L/ab_nodp.txt 2>&1
echo "ab new/nodp rc=$? $((SECONDS-T0))s" >> $S
unset MEGATRON_HYBRID_AUTOTUNE
timeout 90 python3 bench/gdn_breakdown.py --shapes olmo,olmo_tp2 > $L/breakdown_new.txt 2>&1
echo "breakdown new rc=$? $((SECONDS-T0))s" >> $S
timeout $((585 - SECONDS)) python3 bench/dqk_variants.py --out $L > $L/dqk_variants.txt 2>&1
echo "dqk_variants rc=$? $((SECONDS-T0))s" >> $S
tar czf $OUT/all.tgz -C $OUT logs && rm -rf $L
