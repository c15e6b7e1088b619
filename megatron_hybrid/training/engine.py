"""Megatron-Core's engine, assembled: model chunks in DDP, the distributed optimizer, LR schedule.

Nothing here reimplements Megatron; it wires its pieces the way a pretraining run needs them:
one model chunk per (virtual) pipeline stage wrapped in ``DistributedDataParallel`` (fp32 grad
buffers, bucketed reduce-scatter), ``get_megatron_optimizer`` (AdamW with fp32 main params,
sharded over data-parallel ranks), and ``OptimizerParamScheduler`` (linear warmup, cosine to a
floor). The hooks that let the pipeline schedules drive grad sync
(``no_sync_func``/``finalize_model_grads_func``) are installed on the model's config.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from megatron.core import parallel_state
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
from megatron.core.optimizer.optimizer_config import ParamKey
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler, ParamGroupOverride

from megatron_hybrid.compat import fused_adamw, multi_tensor, wgrad_fusion
from megatron_hybrid.training import model as model_api
from megatron_hybrid.training.config import TrainConfig


@dataclass
class Engine:
    model_cfg: object
    transformer_config: object
    chunks: list  # DDP-wrapped model chunks, one per virtual pipeline stage
    optimizer: object
    scheduler: OptimizerParamScheduler


def _dtype(cfg: TrainConfig) -> torch.dtype:
    return torch.bfloat16 if cfg.bf16 else torch.float32


def _wgrad_fusion(wanted: bool | None) -> bool:
    """Megatron's gradient_accumulation_fusion for this run (every weight has a DDP main_grad here)."""
    if wanted is False:
        return False
    impl = wgrad_fusion.install()
    if impl is None and wanted:
        raise ValueError(
            "gradient_accumulation_fusion: true needs CUDA and apex's fused_weight_gradient_mlp_cuda or a torch with "
            "addmm(..., out_dtype=); set it to null (use it when available) or false"
        )
    return impl is not None


def transformer_config(cfg: TrainConfig, model_cfg):
    """The model's Megatron config with this run's layout, precision and recompute."""
    overrides = dict(
        tensor_model_parallel_size=cfg.tensor_model_parallel_size,
        pipeline_model_parallel_size=cfg.pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=cfg.virtual_pipeline_model_parallel_size,
        sequence_parallel=cfg.sequence_parallel,
        bf16=cfg.bf16,
        params_dtype=_dtype(cfg),
        pipeline_dtype=_dtype(cfg),
        autocast_dtype=_dtype(cfg),
        recompute_granularity=cfg.recompute_granularity,
        recompute_method=cfg.recompute_method,
        recompute_num_layers=cfg.recompute_num_layers,
    )
    if cfg.virtual_pipeline_model_parallel_size is None:
        del overrides["virtual_pipeline_model_parallel_size"]
    overrides["gradient_accumulation_fusion"] = _wgrad_fusion(cfg.gradient_accumulation_fusion)
    if not torch.cuda.is_available():
        # gloo matches point-to-point messages between two ranks only by order (tag 0): a batched
        # send of an activation and a gradient to the same neighbour (PP=2, where next == prev)
        # can be received swapped. Unbatched p2p posts them in a fixed even/odd order instead.
        overrides["batch_p2p_comm"] = False
    return model_cfg.transformer_config(**overrides)


def build_chunks(cfg: TrainConfig, model_cfg, tcfg) -> list:
    """This rank's model chunks (one per virtual stage), each wrapped in Megatron's DDP."""
    vp = cfg.virtual_pipeline_model_parallel_size
    chunks = []
    for vp_stage in range(vp or 1):
        stage = vp_stage if vp else None
        module = model_api.build(
            model_cfg,
            tcfg,
            pre_process=parallel_state.is_pipeline_first_stage(ignore_virtual=False, vp_stage=stage),
            post_process=parallel_state.is_pipeline_last_stage(ignore_virtual=False, vp_stage=stage),
            vp_stage=stage,
            backend="local_async_tp" if cfg.async_tensor_parallel else "local",
        )
        if cfg.bf16:
            # All storage bf16, as Megatron's Float16Module does; the optimizer keeps fp32 master
            # copies. Layers that create some parameters in fp32 (GDN's A_log, dt_bias) are cast
            # too: Megatron 0.19's distributed-optimizer checkpoint (dp_reshardable) asserts on
            # grad buffers that mix dtypes. The layers still compute their gates in fp32.
            module = module.to(torch.bfloat16)
        chunks.append(module)
    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=cfg.grad_reduce_in_fp32,
        overlap_grad_reduce=cfg.overlap_grad_reduce,
        overlap_param_gather=cfg.overlap_param_gather,
        use_distributed_optimizer=cfg.use_distributed_optimizer,
        check_for_nan_in_grad=False,  # NaN steps are skipped by the trainer, not asserted on
    )
    wrapped = [
        DistributedDataParallel(config=tcfg, ddp_config=ddp_config, module=m, disable_bucketing=i > 0)
        for i, m in enumerate(chunks)
    ]
    for w in wrapped:
        w.broadcast_params()  # identical replicas across DP even if an init path drew extra randoms
    # Let the pipeline schedules drive grad sync: no reduce inside accumulation, reduce at the end.
    tcfg.no_sync_func = [w.no_sync for w in wrapped] if len(wrapped) > 1 else wrapped[0].no_sync
    tcfg.finalize_model_grads_func = finalize_model_grads
    if cfg.overlap_grad_reduce:
        tcfg.grad_sync_func = [w.start_grad_sync for w in wrapped]
        if len(wrapped) == 1:
            tcfg.grad_sync_func = tcfg.grad_sync_func[0]
    # With overlap_param_gather, DDP's forward pre-hooks gather parameters as each bucket is
    # needed (the first gather starts in optimizer.zero_grad()); no param_sync_func is needed.
    return wrapped


def build_optimizer(cfg: TrainConfig, chunks: list):
    """AdamW on fp32 main params; weight decay everywhere except the named patterns."""
    multi_tensor.install()  # grad norm, clipping and the main-to-model copy on torch's foreach kernels (no apex/TE)
    opt_cfg = OptimizerConfig(
        optimizer="adam",
        lr=cfg.lr,
        min_lr=cfg.resolved_min_lr(),
        weight_decay=cfg.weight_decay,
        adam_beta1=cfg.adam_beta1,
        adam_beta2=cfg.adam_beta2,
        adam_eps=cfg.adam_eps,
        clip_grad=cfg.clip_grad,
        bf16=cfg.bf16,
        params_dtype=_dtype(cfg),
        use_distributed_optimizer=cfg.use_distributed_optimizer,
        overlap_param_gather=cfg.overlap_param_gather,
        decoupled_weight_decay=True,
    )
    # Megatron's default exempts every 1-D parameter (norms) from decay; Olmo decays all of them
    # and exempts only the embedding, so the default is replaced by an explicit pattern list.
    overrides = {}
    if cfg.no_weight_decay_params:
        overrides[ParamKey(name=tuple(cfg.no_weight_decay_params))] = ParamGroupOverride(wd_mult=0.0)
    optimizer = get_megatron_optimizer(opt_cfg, chunks, config_overrides=overrides)
    fused_adamw.set_fused(optimizer, bool(cfg.fused_adam))  # no-op where apex's / TE's FusedAdam was picked
    return optimizer


def build_scheduler(cfg: TrainConfig, optimizer) -> OptimizerParamScheduler:
    train_iters = cfg.resolved_train_iters()
    decay = cfg.lr_decay_iters if cfg.lr_decay_iters is not None else train_iters
    return OptimizerParamScheduler(
        optimizer,
        init_lr=0.0,
        max_lr=cfg.lr,
        min_lr=cfg.resolved_min_lr(),
        lr_warmup_steps=cfg.lr_warmup_iters,
        lr_decay_steps=max(decay, cfg.lr_warmup_iters + 1),
        lr_decay_style=cfg.lr_decay_style,
        wsd_decay_steps=cfg.lr_wsd_decay_iters,
        lr_wsd_decay_style=cfg.lr_wsd_decay_style,
        start_wd=cfg.weight_decay,
        end_wd=cfg.weight_decay,
        wd_incr_steps=max(train_iters, 1),
        wd_incr_style="constant",
        use_checkpoint_opt_param_scheduler=True,
    )


def build_engine(cfg: TrainConfig) -> Engine:
    model_cfg = model_api.model_config(cfg.model, cfg.model_overrides)
    tcfg = transformer_config(cfg, model_cfg)
    chunks = build_chunks(cfg, model_cfg, tcfg)
    optimizer = build_optimizer(cfg, chunks)
    scheduler = build_scheduler(cfg, optimizer)
    return Engine(model_cfg, tcfg, chunks, optimizer, scheduler)
