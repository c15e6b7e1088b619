"""Activation memory per block: the bytes each 7B block keeps for its backward, per token (runs on a CPU).

Builds one block of each kind at the 7B widths, runs its forward at a short sequence with the project's Triton
autograd Functions (under TRITON_INTERPRET=1, so the same tensors are saved as on the GPU) and records every tensor
that autograd saves for the backward, once per storage, leaving out parameters and the block input. Saved bytes grow
linearly with T, so the per-token numbers scale to T=8192. This is the per-layer part of the peak memory of a
training step (what stays alive from the forward to the backward); the backward's own workspace comes on top.

    python bench/activation_memory.py [--seq 128] [--out bench/results]

Attention on the CPU runs torch's SDPA, which keeps q, k, v, the output and the log-sum-exp, as the GPU's flash
and FlexAttention kernels do.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported: the Triton Functions run on the CPU

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402
from megatron.core.transformer.spec_utils import build_module  # noqa: E402

from layer_specs.hybrid import attention_layer_spec, gdn_layer_spec  # noqa: E402
from megatron_hybrid.compat.distributed import init_distributed  # noqa: E402
from megatron_hybrid.models import presets  # noqa: E402
from megatron_hybrid.training.estimate import saved_tensors  # noqa: E402

BLOCKS = {
    "GDN block (Olmo Hybrid, d=3840)": (gdn_layer_spec, "olmo_hybrid_7b"),
    "full-attention block (Olmo Hybrid, d=3840)": (lambda: attention_layer_spec(None), "olmo_hybrid_7b"),
    "sliding-window block (Olmo 3, d=4096)": (lambda: attention_layer_spec(4096), "olmo3_7b"),
    "full-attention block (Olmo 3, d=4096)": (lambda: attention_layer_spec(None), "olmo3_7b"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seq", type=int, default=128, help="sequence length of the measured forward")
    parser.add_argument("--scale-to", type=int, default=8192, help="report MiB at this sequence length")
    parser.add_argument("--out", default=str(report.RESULTS), help="results directory")
    args = parser.parse_args()
    init_distributed()
    torch.manual_seed(0)
    rows, details = [], []
    for label, (spec, preset) in BLOCKS.items():
        cfg = presets.get(preset)
        tcfg = cfg.transformer_config(
            params_dtype=torch.bfloat16, bf16=True, use_cpu_initialization=True, perform_initialization=False
        )
        block = build_module(spec(), config=tcfg, layer_number=1)
        x = torch.randn(args.seq, 1, cfg.d_model, dtype=torch.bfloat16, requires_grad=True)
        entries = saved_tensors(block, x)
        per_token = sum(e["bytes"] for e in entries) / args.seq
        rows.append(
            {
                "block": label,
                "saved_bytes_per_token": per_token,
                f"MiB_at_T{args.scale_to}": per_token * args.scale_to / 2**20,
            }
        )
        details.append(f"\n### {label}\n\n| MiB at T={args.scale_to} | dtype | shape at T={args.seq} | saved by |")
        details.append("|---|---|---|---|")
        for e in entries:
            mib = e["bytes"] / args.seq * args.scale_to / 2**20
            details.append(f"| {mib:.1f} | {e['dtype']} | {e['shape']} | {e['saved_by_grad_fn_of']} |")
        print(f"{label:45s} {per_token:9.0f} bytes/token  {rows[-1][f'MiB_at_T{args.scale_to}']:7.0f} MiB", flush=True)
    notes = (
        f"Measured on the CPU at T={args.seq} with the Triton Functions under the interpreter, bf16, micro-batch 1, "
        "TP=1; parameters and the block input left out; one count per storage (a view keeps its whole base "
        "alive, so a view's row is its base's size). Per-tensor breakdown:\n" + "\n".join(details)
    )
    columns = ["block", "saved_bytes_per_token", f"MiB_at_T{args.scale_to}"]
    print(report.write("activation_memory", rows, columns, notes, Path(args.out)).read_text())


if __name__ == "__main__":
    main()
