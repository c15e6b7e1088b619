"""What ``--dry-run`` prints: the resolved layout, parameter count, FLOPs and a memory estimate.

The memory estimate is analytic and per GPU, for the most loaded pipeline stage (the first:
it holds the embedding and, under 1F1B, the most micro-batches in flight):

* weights: bf16 (2 B/param) of this rank's share (``1/TP`` of its stage's layers);
* gradients: fp32 buffers when ``grad_reduce_in_fp32`` (4 B/param), else 2 B;
* optimizer: fp32 main params + Adam moments (12 B/param), divided by DP with the distributed
  optimizer;
* activations: ~34 x s x b x h bytes per layer (Korthikanti et al. 2022, flash-style attention,
  no s^2 term), divided by TP with sequence parallelism; ``2 x s x b x h`` per layer with full
  recompute; times the micro-batches in flight on stage 0 (PP for 1F1B); plus fp32 logits.

It is a planning number (real runs add allocator slack and communication buffers, ~10-15%).
"""

from __future__ import annotations

from megatron_hybrid.training import model as model_api
from megatron_hybrid.training.config import TrainConfig

GIB = 2**30


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
    act_per_layer = (2 if cfg.recompute_granularity == "full" else 34) * s * b * d
    act_per_layer /= tp if (cfg.sequence_parallel or tp == 1) else 1
    in_flight = min(pp, cfg.global_batch_size // (b * dp)) if pp > 1 else 1
    activations = act_per_layer * (layers / pp) * in_flight
    logits = 3 * 4 * s * b * vocab / tp if pp == 1 else 0  # fp32 logits, softmax and grad on the last stage
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
