"""The LM loss's vocabulary pass (``megatron_hybrid/ops/cross_entropy.py``) on one GPU: fused Triton against torch.

At the 7B trainer's shapes (N = 8192 tokens, bf16 logits, the vocabulary slice of TP = 1 and TP = 2: 100352 and
50176 columns), the forward + backward of ``ce + z_loss_weight * lse^2`` (the trainer's objective), as
- ``fused``: the Triton kernels, the gradient written over the logits (what ``fused_cross_entropy: true`` runs);
- ``fused, new grad``: the same kernels writing the gradient into a new tensor;
- ``torch``: the torch path (fp32 copy of the logits, autograd), the trainer's default before;
- ``megatron``: Megatron-Core's ``vocab_parallel_cross_entropy`` (cross-entropy only, no z-loss), the anchor;
median time (``triton.testing.do_bench``), the memory the call needs beyond the logits (peak allocated minus before),
and lse / gradient errors against an fp64 reference on the same bf16 logits. Writes ``cross_entropy.{json,md}``.

    python bench/cross_entropy.py [--tokens 8192] [--vocab 100352,50176] [--out bench/results]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402

from megatron_hybrid.ops.cross_entropy import vocab_parallel_lse  # noqa: E402

Z_LOSS = 1e-5
COLUMNS = ["vocab", "variant", "ms", "GB/s", "extra_mem_gib", "lse_err", "grad_err"]


def objective(variant: str):
    """logits, targets -> the scalar loss of ``variant``."""
    if variant == "megatron":
        from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

        return lambda x, t: vocab_parallel_cross_entropy(x, t).sum()  # fp32 math inside, CE only

    fused, inplace = variant != "torch", variant == "fused"

    def loss(x, t):
        lse, target_logit = vocab_parallel_lse(x, t, inplace_backward=inplace, fused=fused)
        return (lse - target_logit + Z_LOSS * lse.square()).sum()

    return loss


def reference(logits: torch.Tensor, targets: torch.Tensor, ce_only: bool):
    x = logits.double().requires_grad_()
    lse = torch.logsumexp(x, -1)
    loss = lse - x.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if not ce_only:
        loss = loss + Z_LOSS * lse.square()
    (grad,) = torch.autograd.grad(loss.sum(), x)
    return lse.detach(), grad


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b).norm() / b.norm()).item()


def cuda_median_ms(fn) -> float:
    return triton.testing.do_bench(fn, warmup=5, rep=40, return_mode="median")


def run_vocab(N: int, V: int, variants: list[str], device: str = "cuda", time_ms=cuda_median_ms) -> list[dict]:
    """One row per variant (``device``/``time_ms`` other than CUDA's: the tests' CPU run under TRITON_INTERPRET)."""
    cuda = device == "cuda"
    gen = torch.Generator(device=device).manual_seed(0)
    raw = (3 * torch.randn(N, V, device=device, generator=gen)).to(torch.bfloat16)
    targets = torch.randint(0, V, (N,), device=device, generator=gen)
    rows = []
    for variant in variants:
        loss_fn = objective(variant)
        # errors, on a fresh copy (the in-place variant overwrites its logits)
        ref_lse, ref_grad = reference(raw, targets, ce_only=variant == "megatron")
        x = raw.clone().requires_grad_()
        lse_err = float("nan")
        if variant != "megatron":
            lse, _ = vocab_parallel_lse(x.detach(), targets, fused=variant != "torch")
            lse_err = rel(lse, ref_lse)
        (grad,) = torch.autograd.grad(loss_fn(x, targets), x)
        grad_err = rel(grad, ref_grad)
        del ref_lse, ref_grad, grad
        extra = float("nan")
        if cuda:  # memory beyond the logits (a gradient in a new tensor counts)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            (grad,) = torch.autograd.grad(loss_fn(x, targets), x)
            torch.cuda.synchronize()
            extra = (torch.cuda.max_memory_allocated() - before) / 2**30
            del grad

        def step(x=x, loss_fn=loss_fn):
            torch.autograd.grad(loss_fn(x, targets), x)

        ms = time_ms(step)
        traffic = 3 * N * V * raw.element_size()  # the floor: read the logits twice, write the gradient once
        row = {"vocab": V, "variant": variant, "ms": ms, "GB/s": traffic / ms / 1e6, "extra_mem_gib": extra}
        row |= {"lse_err": lse_err, "grad_err": grad_err}
        rows.append(row)
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
        del x
        if cuda:
            torch.cuda.empty_cache()
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=8192, help="rows (micro-batch x sequence)")
    ap.add_argument("--vocab", default="100352,50176", help="comma-separated vocabulary slice widths")
    ap.add_argument("--variants", default="fused,fused new grad,torch,megatron")
    ap.add_argument("--out", default=str(report.RESULTS), help="folder for cross_entropy.json and .md")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench/cross_entropy.py needs a CUDA GPU")
    from megatron_hybrid.compat.distributed import init_distributed

    init_distributed(1, 1)  # Megatron's cross-entropy reads the (one-rank) TP group
    report.warm_up_gpu()
    variants = args.variants.split(",")
    rows = []
    for V in (int(v) for v in args.vocab.split(",")):
        rows += run_vocab(args.tokens, V, variants)
    notes = f"""
N = {args.tokens} rows of bf16 logits, targets uniform over the slice, one GPU (TP group of one), z-loss weight
{Z_LOSS} (the megatron row: cross-entropy only). ms: forward + backward of the scalar loss to the logits' gradient
(`torch.autograd.grad`). GB/s: 3 x N x V x 2 bytes (read the logits twice, write the gradient) over that time.
extra_mem_gib: peak allocated during one call minus before it (the logits themselves excluded; a gradient in a new
tensor counts). Errors: normwise, against fp64 on the same bf16 logits.
"""
    path = report.write("cross_entropy", rows, COLUMNS, notes, out_dir=Path(args.out))
    print(report.markdown_table(rows, COLUMNS))
    print(f"wrote {path} and {path.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
