"""Per-rank bodies of the parallel-equivalence tests (run through tests/distributed_harness.py).

Every layout runs one training step's forward and backward through the real Megatron path
(DistributedDataParallel, the pipeline schedule, finalize_model_grads). Weights come from one
distributed checkpoint written at TP=1/PP=1; gradients are written back as a distributed
checkpoint, so comparing layouts also exercises resharding of every tensor, fused ones included.
"""

from __future__ import annotations

import os

import torch
from megatron.core import dist_checkpointing, parallel_state
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
from megatron.core.pipeline_parallel import get_forward_backward_func

from megatron_hybrid.compat.distributed import init_distributed
from megatron_hybrid.models import build_model, presets

SEQ, BATCH = 24, 2


def model_config(pattern: str):
    return presets.tiny(pattern, n_layers=4, sliding_window=5)


def _build(pattern: str, tp: int = 1, pp: int = 1, sp: bool = False, backend: str = "local"):
    init_distributed(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp, seed=7)
    cfg = model_config(pattern)
    tcfg = cfg.transformer_config(
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        sequence_parallel=sp,
        use_cpu_initialization=True,
        pipeline_dtype=torch.float32,
    )
    model = build_model(
        cfg,
        tcfg,
        pre_process=parallel_state.is_pipeline_first_stage(),
        post_process=parallel_state.is_pipeline_last_stage(),
        backend=backend,
    )
    return cfg, tcfg, model


def _batch(vocab: int):
    gen = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, vocab, (BATCH, SEQ + 1), generator=gen)
    return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()


def _load(model, ckpt_dir):
    state = dist_checkpointing.load(model.sharded_state_dict(), ckpt_dir)
    model.load_state_dict(state)


def _train_step_grads(cfg, tcfg, model):
    """Forward + backward of one micro-batch; returns (loss on the last stage or None, ddp model)."""
    ddp = DistributedDataParallel(
        config=tcfg, ddp_config=DistributedDataParallelConfig(grad_reduce_in_fp32=True), module=model
    )
    ddp.zero_grad_buffer()
    inputs, labels = _batch(cfg.vocab_size)
    positions = torch.arange(SEQ).expand(BATCH, -1)

    def forward_step(data_iterator, module):
        output = module(inputs, positions, None, labels=labels)

        def loss_func(per_token):
            loss = per_token.float().mean()
            return loss, {"loss": loss.detach()}

        return output, loss_func

    losses = get_forward_backward_func()(
        forward_step_func=forward_step,
        data_iterator=iter([None]),
        model=[ddp],
        num_microbatches=1,
        seq_length=SEQ,
        micro_batch_size=BATCH,
        forward_only=False,
    )
    finalize_model_grads([ddp])
    loss = losses[0]["loss"].item() if losses else None
    return loss, ddp


def save_reference(rank, world, pattern, ckpt_dir):
    """TP=1/PP=1: random weights (norms perturbed too) saved as a distributed checkpoint."""
    cfg, tcfg, model = _build(pattern)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                p.add_(0.1 * torch.randn_like(p))
    os.makedirs(ckpt_dir, exist_ok=True)
    dist_checkpointing.save(model.sharded_state_dict(), ckpt_dir)
    return True


def step_and_save_grads(rank, world, pattern, ckpt_dir, grads_dir, tp, pp, sp):
    """Load the reference weights at this layout, take a step, save the gradients as a checkpoint."""
    cfg, tcfg, model = _build(pattern, tp, pp, sp)
    _load(model, ckpt_dir)
    loss, ddp = _train_step_grads(cfg, tcfg, model)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.main_grad)
    os.makedirs(grads_dir, exist_ok=True)
    dist_checkpointing.save(model.sharded_state_dict(), grads_dir)
    return loss


def async_tp_model_step(rank, world, pattern, ckpt_dir):
    """The reference weights at TP=2 with SP, one step with the local linears and one with the async-TP ones
    (plain collectives on gloo): the loss and every gradient."""
    from megatron_hybrid.compat import fused_collectives
    from megatron_hybrid.layers import shared_input_linear

    fused_collectives.force_reference = True
    shared = shared_input_linear._SharedInputColumnParallel
    real_apply, calls = shared.apply, []

    def counted(*args):
        calls.append(args[5])  # pipelined (the async-TP gather)
        return real_apply(*args)

    shared.apply = counted
    out = {}
    try:
        for backend in ("local", "local_async_tp"):
            calls.clear()
            cfg, tcfg, model = _build(pattern, tp=2, sp=True, backend=backend)
            _load(model, ckpt_dir)
            loss, _ = _train_step_grads(cfg, tcfg, model)
            kinds = sorted({type(m).__name__ for m in model.modules() if "ParallelLinear" in type(m).__name__})
            out[backend] = {
                "loss": loss,
                "kinds": kinds,
                "shared_gathers": list(calls),  # one per GDN layer call: (pipelined,)
                "grads": {n: p.main_grad.clone() for n, p in model.named_parameters()},
            }
    finally:
        shared.apply = real_apply
    return out


def read_full_state(rank, world, pattern, ckpt_dir):
    """A checkpoint read back at TP=1/PP=1, as plain tensors."""
    cfg, tcfg, model = _build(pattern)
    _load(model, ckpt_dir)
    return {k: v.detach().clone() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}


def resave(rank, world, pattern, src_dir, dst_dir, tp, pp):
    """Load a checkpoint at this layout and save it again from this layout."""
    cfg, tcfg, model = _build(pattern, tp, pp)
    _load(model, src_dir)
    os.makedirs(dst_dir, exist_ok=True)
    dist_checkpointing.save(model.sharded_state_dict(), dst_dir)
    return True


def _tp2_linear_setup(sequence_parallel: bool, fusion: bool):
    """TP=2 groups and a linear config: bf16 and the symm_mem ops on CUDA, fp32 and reference collectives on gloo;
    the wgrad accumulation into main_grad installed under ``fusion``. -> (device, cuda, dtype, config)."""
    from megatron.core.model_parallel_config import ModelParallelConfig

    from megatron_hybrid.compat import fused_collectives, wgrad_fusion

    device = init_distributed(tensor_model_parallel_size=2, seed=7)
    cuda = device.type == "cuda"
    fused_collectives.force_reference = not cuda
    if fusion:
        assert wgrad_fusion.install() is not None
    dtype = torch.bfloat16 if cuda else torch.float32
    cfg = ModelParallelConfig(
        tensor_model_parallel_size=2, sequence_parallel=sequence_parallel, use_cpu_initialization=True,
        params_dtype=dtype, gradient_accumulation_fusion=fusion,
    )  # fmt: skip
    return device, cuda, dtype, cfg


def async_tp_linears_match(rank, world_size, fusion: bool):
    """A column then a row linear at TP=2 with SP, Megatron's own against the async-TP subclasses on the same
    weights and input: outputs, input gradient and weight gradients (into main_grad under ``fusion``). On gloo the
    async path runs with plain collectives (``fused_collectives.force_reference``); on CUDA, torch's symm_mem ops."""
    from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear

    from megatron_hybrid.layers import async_tp

    device, cuda, dtype, cfg = _tp2_linear_setup(sequence_parallel=True, fusion=fusion)
    group = parallel_state.get_tensor_model_parallel_group()
    hidden, ffn, seq, batch = 256, 512, 64, 2
    gen = torch.Generator().manual_seed(11)
    x_full = torch.randn(seq, batch, hidden, generator=gen)
    dout_full = torch.randn(seq, batch, hidden, generator=gen)
    w1 = 0.05 * torch.randn(ffn, hidden, generator=gen)
    w2 = 0.05 * torch.randn(hidden, ffn, generator=gen)
    shard = slice(rank * seq // 2, (rank + 1) * seq // 2)
    fshard = slice(rank * ffn // 2, (rank + 1) * ffn // 2)
    init = torch.nn.init.zeros_
    results = {}
    for name, col_cls, row_cls in (
        ("megatron", ColumnParallelLinear, RowParallelLinear),
        ("async", async_tp.AsyncTPColumnParallelLinear, async_tp.AsyncTPRowParallelLinear),
    ):
        col = col_cls(hidden, ffn, config=cfg, init_method=init, bias=False, gather_output=False, tp_group=group)
        row = row_cls(ffn, hidden, config=cfg, init_method=init, bias=False, input_is_parallel=True,
                      skip_bias_add=False, tp_group=group)  # fmt: skip
        col, row = col.to(device), row.to(device)
        with torch.no_grad():
            col.weight.copy_(w1[fshard])
            row.weight.copy_(w2[:, fshard])
        for w in (col.weight, row.weight):
            w.main_grad = torch.zeros(w.shape, device=device)
            w.grad_added_to_main_grad = False
        x = x_full[shard].to(device, dtype).requires_grad_()
        hidden_act = col(x)[0]
        out = row(torch.nn.functional.gelu(hidden_act))[0]
        results[name + "_fns"] = [type(t.grad_fn).__name__ for t in (hidden_act, out)]
        out.backward(dout_full[shard].to(device, dtype))
        grads = [w.main_grad.clone() if fusion else w.grad.float() for w in (col.weight, row.weight)]
        results[name] = [out.detach().float().cpu(), x.grad.float().cpu()] + [g.cpu() for g in grads]
    return {
        "rel": [((a - b).norm() / b.norm()).item() for a, b in zip(results["async"], results["megatron"], strict=True)],
        "cuda": cuda,
        "async_fns": results["async_fns"],
    }


def shared_input_projections_match(rank, world_size, sequence_parallel: bool, async_cls: bool, fusion: bool):
    """The GDN layer's two input projections at TP=2: one gather for both (``shared_input_projections``) against the
    two linears' own calls on the same weights and input: both outputs, the input gradient and both weight gradients
    (into main_grad under ``fusion``). Plain collectives on gloo; on CUDA the pipelined symm_mem op for async."""
    from unittest import mock

    from megatron.core.tensor_parallel import ColumnParallelLinear

    from megatron_hybrid.layers import async_tp, shared_input_linear

    device, cuda, dtype, cfg = _tp2_linear_setup(sequence_parallel, fusion)
    group = parallel_state.get_tensor_model_parallel_group()
    hidden, wide, narrow, seq, batch = 128, 384, 6, 64, 2
    gen = torch.Generator().manual_seed(5)
    x_full = torch.randn(seq, batch, hidden, generator=gen)
    dy_a = torch.randn(seq, batch, wide // 2, generator=gen)
    dy_b = torch.randn(seq, batch, narrow // 2, generator=gen)
    w_a, w_b = 0.05 * torch.randn(wide, hidden, generator=gen), torch.randn(narrow, hidden, generator=gen)
    cls = async_tp.AsyncTPColumnParallelLinear if async_cls else ColumnParallelLinear
    rows = slice(rank * seq // 2, (rank + 1) * seq // 2) if sequence_parallel else slice(None)
    results, paths = {}, {}
    for shared in ("1", "0"):
        linears = []
        for w in (w_a, w_b):
            lin = cls(hidden, w.shape[0], config=cfg, init_method=torch.nn.init.zeros_, bias=False,
                      gather_output=False, tp_group=group).to(device)  # fmt: skip
            with torch.no_grad():
                lin.weight.copy_(w[rank * w.shape[0] // 2 : (rank + 1) * w.shape[0] // 2])
            lin.weight.main_grad = torch.zeros(lin.weight.shape, device=device)
            lin.weight.grad_added_to_main_grad = False
            linears.append(lin)
        x = x_full[rows].to(device, dtype).requires_grad_()
        with mock.patch.dict(os.environ, {shared_input_linear.ENV: shared}):
            paths[shared] = shared_input_linear.shares_input(*linears)
            y_a, y_b = shared_input_linear.shared_input_projections(x, *linears)
        ((y_a.float() * dy_a.to(device)).sum() + (y_b.float() * dy_b.to(device)).sum()).backward()
        grads = [lin.weight.main_grad.clone() if fusion else lin.weight.grad.float() for lin in linears]
        results[shared] = [t.detach().float().cpu() for t in (y_a, y_b, x.grad, *grads)]
    rel = [((a - b).norm() / b.norm()).item() for a, b in zip(results["1"], results["0"], strict=True)]
    return {"rel": rel, "paths": paths, "cuda": cuda}
