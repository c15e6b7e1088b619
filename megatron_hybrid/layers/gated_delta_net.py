"""Olmo Hybrid's Gated DeltaNet mixer as a tensor-parallel Megatron module.

It fits the ``self_attention`` slot of Megatron's ``TransformerLayer``: input ``[s, b, h]``
(``[s/tp, b, h]`` under sequence parallelism), output ``(out, bias)``.

Per token: q, k, v, gate z = x W (one fused ColumnParallel projection), b, a = x W_ba (a second,
small one: fused with the first, the output width 2*K*H + 2*V*H + 2*H is not a multiple of 8
elements and cuBLAS falls back to slow unaligned kernels, ~4.3 ms instead of ~1.6 ms per GEMM
at the 7B shape on an H100; the two share one round of TP communication,
``layers/shared_input_linear.py``); a depthwise causal
conv (kernel 4) + SiLU over [q, k, v]; per-head L2 norm of q and k (inside the op); beta =
sigmoid(b) (x2 with negative eigenvalues); g = -exp(A_log) softplus(a + dt_bias); the gated delta
rule; per-head RMSNorm of the output times SiLU(z); RowParallel output projection. Everything between
the two projections is one op, ``ops.gdn_mixer``: on the GPU a single autograd Function that keeps
only the projection and the delta rule's output for the backward and recomputes q, k, v there.

Tensor parallelism splits heads: every per-head tensor (projections, conv channels, A_log,
dt_bias) is sharded with them. The out-norm weight (one vector of ``value_head_dim`` shared by
all heads) is replicated; its gradient is summed over TP inside the autograd graph, so it stays
identical on every rank with and without sequence parallelism.

Checkpoint layout: the fused projections and the conv are split per part (query, key, value, z /
beta, alpha / query, key, value) into separately TP-sharded tensors, so checkpoints reshard to
any TP size.
"""

from __future__ import annotations

import math
import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.ssm.utils import _split_tensor_factory
from megatron.core.tensor_parallel import get_cuda_rng_tracker
from megatron.core.tensor_parallel.layers import RowParallelLinear
from megatron.core.tensor_parallel.mappings import (
    copy_to_tensor_model_parallel_region,
    reduce_from_tensor_model_parallel_region,
    reduce_scatter_to_sequence_parallel_region,
)
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.spec_utils import build_module
from megatron.core.transformer.utils import ensure_metadata_has_dp_cp_group, make_sharded_tensors_for_checkpoint

from megatron_hybrid import ops
from megatron_hybrid.layers.async_tp import AsyncTPRowParallelLinear
from megatron_hybrid.layers.shared_input_linear import shared_input_projections

IN_PROJ_PARTS = ("query", "key", "value", "z")
IN_PROJ_BA_PARTS = ("beta", "alpha")
CONV_PARTS = ("query", "key", "value")


def fused_mixer() -> bool:
    """MEGATRON_HYBRID_GDN_FUSED_MIXER=0 composes the mixer from the separate ops (``ops.gdn_mixer``'s fused=False:
    the same kernels, q, k and v kept for the backward instead of recomputed); read at each forward."""
    return os.environ.get("MEGATRON_HYBRID_GDN_FUSED_MIXER", "1") != "0"


def fused_out_projection() -> bool:
    """MEGATRON_HYBRID_GDN_FUSED_OUT_PROJ=0 keeps the output projection a separate module call (which keeps its input,
    y, for the weight gradient); read at each forward. Only with the fused mixer and Megatron's local linear."""
    return os.environ.get("MEGATRON_HYBRID_GDN_FUSED_OUT_PROJ", "1") != "0"


def _is_plain_row_parallel(linear) -> bool:
    """Megatron's local RowParallelLinear in its plain form: its forward is then the local GEMM plus the TP reduction,
    which the mixer can do itself, including the fused wgrad accumulation into main_grad (TE's linear, a bias or CPU
    offloading: not fused)."""
    return (
        type(linear) in (RowParallelLinear, AsyncTPRowParallelLinear)
        and linear.input_is_parallel
        and linear.bias is None
        and not linear.explicit_expert_comm
        and linear.config._cpu_offloading_context is None
    )


@dataclass
class GatedDeltaNetSubmodules:
    in_proj: type | object = None
    out_proj: type | object = None


class GatedDeltaNet(MegatronModule):
    def __init__(
        self,
        config,
        submodules: GatedDeltaNetSubmodules,
        layer_number: int,
        pg_collection: ProcessGroupCollection | None = None,
        **unused,
    ):
        super().__init__(config=config)
        pg_collection = pg_collection or ProcessGroupCollection.use_mpu_process_groups()
        self.tp_group = pg_collection.tp
        tp_size = self.tp_group.size() if self.tp_group is not None else 1
        self.layer_number = layer_number
        self.key_head_dim = config.linear_key_head_dim
        self.value_head_dim = config.linear_value_head_dim
        self.num_key_heads = config.linear_num_key_heads
        self.num_value_heads = config.linear_num_value_heads
        for name, heads in (
            ("linear_num_key_heads", self.num_key_heads),
            ("linear_num_value_heads", self.num_value_heads),
        ):
            if heads % tp_size:
                raise ValueError(f"{name}={heads} is not divisible by the tensor-parallel size {tp_size}")
        self.num_key_heads_local_tp = self.num_key_heads // tp_size
        self.num_value_heads_local_tp = self.num_value_heads // tp_size
        key_local = self.num_key_heads_local_tp * self.key_head_dim
        value_local = self.num_value_heads_local_tp * self.value_head_dim
        heads_local = self.num_value_heads_local_tp
        self.in_proj_sections = [key_local, key_local, value_local, value_local]
        self.in_proj_ba_sections = [heads_local, heads_local]
        self.conv_dim_local_tp = 2 * key_local + value_local
        self.allow_neg_eigval = config.linear_allow_neg_eigval
        self.norm_eps = config.linear_norm_eps

        def input_projection(sections, buffer_name):
            return build_module(
                submodules.in_proj,
                config.hidden_size,
                sum(sections) * tp_size,
                config=config,
                init_method=config.init_method,
                gather_output=False,
                bias=False,
                skip_bias_add=False,
                is_expert=False,
                tp_comm_buffer_name=buffer_name,
                tp_group=self.tp_group,
            )

        self.in_proj = input_projection(self.in_proj_sections, "gdn_in")
        self.in_proj_ba = input_projection(self.in_proj_ba_sections, "gdn_in_ba")
        dtype = config.params_dtype
        self.conv1d = torch.nn.Conv1d(
            self.conv_dim_local_tp,
            self.conv_dim_local_tp,
            kernel_size=config.linear_conv_kernel_dim,
            groups=self.conv_dim_local_tp,
            bias=False,
            dtype=dtype,
        )
        self.A_log = torch.nn.Parameter(torch.empty(heads_local, dtype=torch.float32))
        self.dt_bias = torch.nn.Parameter(torch.empty(heads_local, dtype=torch.float32))
        for param in (self.conv1d.weight, self.A_log, self.dt_bias):
            param.tensor_model_parallel = True
            param.partition_dim = 0
            param.partition_stride = 1
        self.out_norm = torch.nn.Module()
        self.out_norm.weight = torch.nn.Parameter(torch.ones(self.value_head_dim, dtype=dtype))
        self.out_proj = build_module(
            submodules.out_proj,
            self.num_value_heads * self.value_head_dim,
            config.hidden_size,
            config=config,
            init_method=config.output_layer_init_method,
            bias=False,
            input_is_parallel=True,
            skip_bias_add=True,
            is_expert=False,
            tp_comm_buffer_name="gdn_out",
            tp_group=self.tp_group,
        )
        if config.perform_initialization:
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Olmo's init: A ~ U(lo, hi), dt = exp(U(log dt_min, log dt_max)) >= floor, dt_bias = softplus^-1(dt)."""
        cfg = self.config
        tracker = get_cuda_rng_tracker()
        # Different TP ranks hold different heads: draw them from the model-parallel RNG stream.
        with tracker.fork() if tracker.is_initialized() else nullcontext():
            cfg.init_method(self.conv1d.weight)
            lo, hi = cfg.linear_a_log_range
            self.A_log.copy_(torch.empty_like(self.A_log).uniform_(lo, hi).log())
            dt_min, dt_max = cfg.linear_dt_range
            u = torch.rand_like(self.dt_bias)
            dt = torch.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
            dt = dt.clamp(min=cfg.linear_dt_init_floor)
            self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def forward(self, hidden_states, attention_mask=None, packed_seq_params=None, **unused):
        cu_seqlens = None
        if packed_seq_params is not None:
            cu_seqlens = packed_seq_params.cu_seqlens_q.to(torch.int32)
        # [s, b, local q k v z] and [s, b, local b a], with one all-gather of the input under SP
        projected, projected_ba = shared_input_projections(hidden_states, self.in_proj, self.in_proj_ba)
        projected = projected.transpose(0, 1)  # [b, s, .]: the ops' layout
        beta_logit, a = projected_ba.transpose(0, 1).split(self.in_proj_ba_sections, dim=-1)
        g, beta = ops.gdn_gates(a, beta_logit, self.A_log, self.dt_bias, allow_neg_eigval=self.allow_neg_eigval)
        # The shared norm weight meets different heads on each TP rank: sum its gradient over TP.
        norm_weight = self.out_norm.weight
        if self.tp_group is not None and self.tp_group.size() > 1:
            norm_weight = copy_to_tensor_model_parallel_region(norm_weight, group=self.tp_group)
        dims = (self.num_key_heads_local_tp, self.num_value_heads_local_tp, self.key_head_dim, self.value_head_dim)
        fused = fused_mixer()
        # the output projection's GEMM inside the mixer Function (no copy of its input kept); the TP reduction here,
        # as RowParallelLinear does it
        fuse_out = fused and fused_out_projection() and _is_plain_row_parallel(self.out_proj)
        # async TP: the mixer reduce-scatters its output itself, pipelined with the GEMM
        async_out = fuse_out and isinstance(self.out_proj, AsyncTPRowParallelLinear)
        async_out = async_out and self.out_proj.overlaps(projected)
        out = ops.gdn_mixer(
            projected, self.conv1d.weight.squeeze(1), g, beta, norm_weight, dims, scale=self.key_head_dim**-0.5,
            norm_eps=self.norm_eps, cu_seqlens=cu_seqlens, fused=fused,
            out_weight=self.out_proj.weight if fuse_out else None,
            wgrad_fused=fuse_out and self.out_proj.gradient_accumulation_fusion,
            out_group=self.out_proj.tp_group if async_out else None,
        )  # fmt: skip
        if async_out:
            return out, None
        out = out.transpose(0, 1).contiguous()  # back to [s, b, .]
        if not fuse_out:
            return self.out_proj(out)
        if self.out_proj.sequence_parallel:
            return reduce_scatter_to_sequence_parallel_region(out, group=self.out_proj.tp_group), None
        return reduce_from_tensor_model_parallel_region(out, group=self.out_proj.tp_group), None

    def sharded_state_dict(self, prefix="", sharded_offsets=(), metadata=None):
        metadata = ensure_metadata_has_dp_cp_group(metadata)
        own = {}
        self._save_to_state_dict(own, "", keep_vars=True)  # A_log, dt_bias
        state = make_sharded_tensors_for_checkpoint(
            own,
            prefix,
            {"A_log": 0, "dt_bias": 0},
            sharded_offsets,
            tp_group=self.tp_group,
            dp_cp_group=metadata["dp_cp_group"],
        )
        conv = make_sharded_tensors_for_checkpoint(
            self.conv1d.state_dict(keep_vars=True),
            f"{prefix}conv1d.",
            {"weight": 0},
            sharded_offsets,
            tp_group=self.tp_group,
            dp_cp_group=metadata["dp_cp_group"],
        )
        norm = make_sharded_tensors_for_checkpoint(
            self.out_norm.state_dict(keep_vars=True),
            f"{prefix}out_norm.",
            {},
            sharded_offsets,
            tp_group=self.tp_group,
            dp_cp_group=metadata["dp_cp_group"],
        )
        state.update(conv)
        state.update(norm)
        state.update(self.in_proj.sharded_state_dict(f"{prefix}in_proj.", sharded_offsets, metadata))
        state.update(self.in_proj_ba.sharded_state_dict(f"{prefix}in_proj_ba.", sharded_offsets, metadata))
        state.update(self.out_proj.sharded_state_dict(f"{prefix}out_proj.", sharded_offsets, metadata))
        # Split the fused tensors per part so each part is TP-sharded on its own.
        key = f"{prefix}in_proj.weight"
        state[key] = _split_tensor_factory(state[key], self.in_proj_sections, list(IN_PROJ_PARTS), 0)
        key = f"{prefix}in_proj_ba.weight"
        state[key] = _split_tensor_factory(state[key], self.in_proj_ba_sections, list(IN_PROJ_BA_PARTS), 0)
        key = f"{prefix}conv1d.weight"
        key_local = self.num_key_heads_local_tp * self.key_head_dim
        conv_sections = [key_local, key_local, self.conv_dim_local_tp - 2 * key_local]
        state[key] = _split_tensor_factory(state[key], conv_sections, list(CONV_PARTS), 0)
        return state
