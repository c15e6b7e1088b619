"""What ``--dry-run`` prints: the resolved layout, parameter count, FLOPs and a memory estimate.

The memory estimate is analytic and per GPU, for the most loaded pipeline stage (the first:
it holds the embedding and, under 1F1B, the most micro-batches in flight):

* weights: bf16 (2 B/param) of this rank's share (``1/TP`` of its stage's layers);
* gradients: fp32 buffers when ``grad_reduce_in_fp32`` (4 B/param), else 2 B;
* optimizer: fp32 main params + Adam moments (12 B/param), divided by DP with the distributed
  optimizer;
* activations: per block kind, the bytes its forward keeps for the backward (``block_activation_bytes``:
  counted tensor by tensor with ``bench/activation_memory.py``; an Olmo 3 attention block comes to ~34 x h per
  token, Korthikanti et al.'s flash-attention figure, a GDN block at the Olmo Hybrid dims to ~37 x h), averaged
  over the pattern, times s x b, divided by TP with sequence parallelism; ``2 x s x b x h`` per layer with full
  recompute; times the micro-batches in flight on stage 0 (PP for 1F1B); plus fp32 logits.

It is a planning number (real runs add allocator slack and communication buffers, ~10-15%).
"""

from __future__ import annotations

import torch

from megatron_hybrid.ops.gdn_mixer import recompute_wy
from megatron_hybrid.training import model as model_api
from megatron_hybrid.training.config import TrainConfig

GIB = 2**30


def saved_tensors(module: torch.nn.Module, x: torch.Tensor) -> list[dict]:
    """What ``module(x)`` keeps for its backward, measured: one entry per storage (a view counts as its base),
    parameters and ``x`` left out, largest first. ``block_activation_bytes`` is checked against it."""
    skip = {p.untyped_storage().data_ptr() for p in module.parameters()} | {x.untyped_storage().data_ptr()}
    seen: dict[int, dict] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip and storage.data_ptr() not in seen:
            seen[storage.data_ptr()] = {
                "bytes": storage.nbytes(),
                "shape": tuple(t.shape),
                "dtype": str(t.dtype).removeprefix("torch."),
                "saved_by_grad_fn_of": type(t.grad_fn).__name__ if t.grad_fn is not None else "-",
            }
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    return sorted(seen.values(), key=lambda e: -e["bytes"])


def block_activation_bytes(model_cfg, kind: str) -> float:
    """Bytes per token that one block keeps from its forward for its backward (bf16, TP=1, no recompute).

    The terms are the tensors ``bench/activation_memory.py`` finds (the fused RMSNorm, SwiGLU and GDN ops). MLP:
    fc1 output (2F values) and fc2 input (F). Attention block (``A``/``S``, post-norm): qkv input, q/k norm inputs,
    attention output, post-norm inputs (5 of width h), q, k, v and the output in attention layout, the log-sum-exp.
    GDN block (``G``, pre-norm): the two pre-norm outputs and the MLP's norm input (3h); the input projection
    [q, k, v, z] (the conv's input and the gate); the kernel output; the WY inverse T (fp32, 64 per value head; only
    with MEGATRON_HYBRID_GDN_RECOMPUTE_WY=0, the default solves again in the backward). The
    fused mixer (``ops.gdn_mixer``, the default) recomputes the conv, the q/k norm and v in the backward instead of
    keeping them, and does the output projection's GEMM itself, recomputing its input in the backward."""
    d, ffn = model_cfg.d_model, model_cfg.ffn_hidden
    mlp = 2 * (3 * ffn)
    if kind in ("A", "S"):
        q_width, kv_width = model_cfg.n_heads * model_cfg.attn_head_dim, model_cfg.kv_heads * model_cfg.attn_head_dim
        return mlp + 2 * 5 * d + 2 * (2 * q_width + 2 * kv_width) + 4 * model_cfg.n_heads + 4 * 4  # + 4 rstd
    if kind == "G":
        qk = model_cfg.gdn_key_heads * model_cfg.gdn_k_dim  # one of q, k
        vw = model_cfg.gdn_value_heads * model_cfg.gdn_v_dim  # v, z, the kernel output
        hv = model_cfg.gdn_value_heads
        small = 2 * 4 + (4 + 4 + 4 + 2) * hv  # rstds (2 block norms, out norm), g, a, b, beta
        wy_inverse = 0 if recompute_wy() else 4 * 64 * hv  # kept only with MEGATRON_HYBRID_GDN_RECOMPUTE_WY=0
        return mlp + 2 * 3 * d + 2 * (2 * qk + 2 * vw) + 2 * vw + wy_inverse + small
    raise ValueError(f"unknown block kind {kind!r} (the layer pattern's letters are G, A, S)")


def memory_estimate(cfg: TrainConfig, model_cfg, world_size: int) -> dict:
    tp, pp = cfg.tensor_model_parallel_size, cfg.pipeline_model_parallel_size
    dp = max(1, world_size // (tp * pp))
    total = model_api.num_params(model_cfg)
    d, layers, vocab = model_cfg.d_model, model_cfg.n_layers, model_cfg.vocab_size
    embedding = vocab * d
    per_layer = (total - 2 * embedding) / layers
    stage_params = (per_layer * layers / pp + embedding) / tp  # stage 0: its layers + the embedding
    if pp == 1:
        stage_params += embedding / tp  # the LM head lives on the same (only) stage
    weight_b = 2 if cfg.bf16 else 4
    grad_b = 4 if (cfg.grad_reduce_in_fp32 or not cfg.bf16) else 2
    optim_b = 12 if cfg.bf16 else 8
    optim = stage_params * optim_b / (dp if cfg.use_distributed_optimizer else 1)
    s, b = cfg.seq_length, cfg.micro_batch_size
    if cfg.recompute_granularity == "full":
        act_per_layer = 2 * s * b * d
    else:
        kinds = model_cfg.layer_types()
        act_per_layer = sum(block_activation_bytes(model_cfg, k) for k in kinds) / len(kinds) * s * b
    act_per_layer /= tp if (cfg.sequence_parallel or tp == 1) else 1
    in_flight = min(pp, cfg.global_batch_size // (b * dp)) if pp > 1 else 1
    activations = act_per_layer * (layers / pp) * in_flight
    # On the last stage: the torch loss holds fp32 logits, their exp and the fp32 gradient; the fused one holds the
    # bf16 logits and writes the gradient over them.
    logit_b = 3 * 4 if cfg.fused_cross_entropy is False else 2  # null: fused on the GPUs this estimates
    logits = logit_b * s * b * vocab / tp if pp == 1 else 0
    parts = {
        "weights": stage_params * weight_b,
        "gradients": stage_params * grad_b,
        "optimizer": optim,
        "activations": activations,
        "logits": logits,
    }
    parts = {k: v / GIB for k, v in parts.items()}
    parts["total"] = sum(parts.values())
    return parts


def summary(cfg: TrainConfig, model_cfg, world_size: int) -> str:
    tp, pp, vp = (
        cfg.tensor_model_parallel_size,
        cfg.pipeline_model_parallel_size,
        cfg.virtual_pipeline_model_parallel_size,
    )
    dp = world_size // (tp * pp)
    micro = cfg.global_batch_size // (cfg.micro_batch_size * dp)
    iters = cfg.resolved_train_iters()
    flops = model_api.flops_per_token(model_cfg, cfg.seq_length)
    mem = memory_estimate(cfg, model_cfg, world_size)
    lines = [
        f"model           {cfg.model}: {model_api.num_params(model_cfg):,} parameters ({model_api.builder_name()})",
        f"layout          world {world_size} = TP {tp} x PP {pp} x DP {dp}"
        + (f", {vp} virtual stages per PP rank (interleaved 1F1B)" if vp else "")
        + (", sequence parallel" if cfg.sequence_parallel else "")
        + (", distributed optimizer" if cfg.use_distributed_optimizer else ""),
        f"batch           {cfg.global_batch_size} x {cfg.seq_length} = {cfg.tokens_per_step:,} tokens/step; "
        f"{micro} micro-batch(es) of {cfg.micro_batch_size} per DP rank",
        f"schedule        {iters:,} steps = {iters * cfg.tokens_per_step / 1e9:,.2f}B tokens; "
        f"warmup {cfg.lr_warmup_iters}, "
        f"{cfg.lr_decay_style} {cfg.lr:g} -> {cfg.resolved_min_lr():g}",
        f"FLOPs/token     {flops / 1e9:.2f} GFLOP (fwd+bwd) at seq {cfg.seq_length}; "
        f"{flops * cfg.tokens_per_step * iters:.3e} FLOP for the run",
        "memory/GPU      ~{total:.1f} GiB (weights {weights:.1f}, grads {gradients:.1f}, optimizer {optimizer:.1f}, "
        "activations {activations:.1f}, logits {logits:.1f}); est., stage 0".format(**mem),
    ]
    return "\n".join(lines)
