"""One forward and backward of the chunked gated delta rule, for Nsight Compute (not a benchmark by itself).

Each of the seven kernel launches runs once (no autotuning: MEGATRON_HYBRID_AUTOTUNE=0), after a warm-up call
that compiles them, so that ncu can profile exactly one launch per kernel:

    MEGATRON_HYBRID_AUTOTUNE=0 ncu -k regex:chunk_ --launch-skip 7 --launch-count 7 \\
        --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \\
        python bench/gdn_ncu.py --shape olmo
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gdn_kernels import SHAPES, make  # noqa: E402

from megatron_hybrid.ops import chunk_gated_delta_rule  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="olmo", choices=sorted(SHAPES))
    args = ap.parse_args()
    B, T, H, K, V, lens = SHAPES[args.shape]
    q, k, v, g, beta, cu = make(B, T, H, K, V, lens)
    xs = [x.requires_grad_() for x in (q, k, v, g, beta)]
    do = torch.randn_like(v)
    for _ in range(2):  # the first call compiles, the second is the one to profile (--launch-skip 7)
        o, _ = chunk_gated_delta_rule(*xs, cu_seqlens=cu, use_qk_l2norm=True, keep_states=True)
        o.backward(do)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
