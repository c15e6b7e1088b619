"""Per-rank body of the vocabulary-parallel cross-entropy test (spawned gloo processes; not a test module)."""

from __future__ import annotations

import torch


def split_vocab_lse(rank: int, world_size: int, N: int, V: int, fused: bool):
    """This rank's vocabulary slice through ops.cross_entropy; returns lse, target logit and the slice's gradient."""
    import torch.distributed as dist

    from megatron_hybrid.ops.cross_entropy import vocab_parallel_lse

    dist.init_process_group("gloo")
    try:
        gen = torch.Generator().manual_seed(0)
        logits = 4 * torch.randn(N, V * world_size, generator=gen)
        targets = torch.randint(0, V * world_size, (N,), generator=gen)
        dlse, dtarget = torch.randn(N, generator=gen), torch.randn(N, generator=gen)
        part = logits[:, rank * V : (rank + 1) * V].clone().requires_grad_()
        lse, target_logit = vocab_parallel_lse(part, targets, dist.group.WORLD, fused=fused)
        ((lse * dlse).sum() + (target_logit * dtarget).sum()).backward()
        return lse.detach(), target_logit.detach(), part.grad
    finally:
        dist.destroy_process_group()


def bench_rows_on_cpu(rank: int, world_size: int, N: int, V: int):
    """bench/cross_entropy.py's every variant on the CPU (one rank: Megatron's loss reads the TP group)."""
    import importlib.util
    from pathlib import Path

    from megatron_hybrid.compat.distributed import destroy_distributed, init_distributed

    path = Path(__file__).resolve().parents[3] / "bench" / "cross_entropy.py"
    spec = importlib.util.spec_from_file_location("bench_cross_entropy", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    init_distributed(1, 1)
    try:
        variants = ["fused", "fused new grad", "torch", "megatron"]
        return bench.run_vocab(N, V, variants, device="cpu", time_ms=lambda fn: (fn(), 1.0)[1])
    finally:
        destroy_distributed()


def lm_loss_both_paths(rank: int, world_size: int, N: int, V: int):
    """The trainer's loss (training/loss.py) with fused=True and False on the same logits, over a TP group of
    ``world_size`` ranks: (ce, z, grad) of each."""
    from megatron_hybrid.compat.distributed import destroy_distributed, init_distributed
    from megatron_hybrid.training.loss import lm_loss

    init_distributed(world_size, 1)
    try:
        gen = torch.Generator().manual_seed(0)
        logits = 4 * torch.randn(2, N, V * world_size, generator=gen)
        targets = torch.randint(0, V * world_size, (2, N), generator=gen)
        out = []
        for fused in (True, False):
            part = logits[..., rank * V : (rank + 1) * V].clone().requires_grad_()
            ce, z = lm_loss(part * 1, targets, 1e-3, fused=fused)  # part * 1: the model's logits are not a leaf
            (ce + z).sum().backward()
            out.append((ce.detach(), z.detach(), part.grad))
        return out
    finally:
        destroy_distributed()


def model_grads_both_losses(rank: int, world_size: int, pattern: str):
    """A tiny model's logits through the trainer's loss with fused=True (the gradient written over the logits the
    model returned) and fused=False: loss and every parameter's gradient of each."""
    from megatron_hybrid.compat.distributed import destroy_distributed, init_distributed
    from megatron_hybrid.models import build_model, presets
    from megatron_hybrid.training.loss import lm_loss

    init_distributed(1, 1, seed=3)
    try:
        cfg = presets.tiny(pattern)
        model = build_model(cfg, cfg.transformer_config(use_cpu_initialization=True))
        gen = torch.Generator().manual_seed(0)
        tokens = torch.randint(0, cfg.vocab_size, (2, 17), generator=gen)
        labels = torch.randint(0, cfg.vocab_size, (2, 17), generator=gen)
        positions = torch.arange(17).expand(2, -1)
        out = []
        for fused in (True, False):
            model.zero_grad(set_to_none=True)
            logits = model(tokens, positions, None)
            ce, z = lm_loss(logits, labels, 1e-3, fused=fused)
            loss = (ce + z).mean()
            loss.backward()
            out.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}))
        return out
    finally:
        destroy_distributed()
