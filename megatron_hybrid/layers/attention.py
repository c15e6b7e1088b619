"""Olmo's self-attention as a Megatron module for the ``self_attention`` slot of a layer.

Differences from Megatron's ``SelfAttention`` that Olmo needs:
- QK norm is one RMSNorm over the whole q (and k) projection width, before the head split and
  before RoPE. Under tensor parallelism each rank holds a slice of heads, so the sum of squares
  is all-reduced across the TP group (in both passes) to normalise over the full width; the
  norm weights are sharded with the heads.
- An optional sliding window (Olmo 3's ``S`` layers), carried in the layer's spec.
- Olmo's "reordered" post-norm: the block output is ``x + RMSNorm(attn(x))``; the norm lives
  here (``post_norm``) so Megatron's stock ``TransformerLayer`` can host the block.
- RoPE applied in fp32 as ``transformers`` does (``ops.rope``: one Triton kernel each way on CUDA).

The fused QKV projection is laid out per query group, ``[q_g (heads/groups x d), k_g, v_g]`` for
each group, like Megatron's ``linear_qkv``: a contiguous TP split is a split by heads, so
checkpoints reshard with the stock row partition.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.transformer.identity_op import IdentityOp
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.spec_utils import build_module
from megatron.core.transformer.utils import ensure_metadata_has_dp_cp_group, make_sharded_tensors_for_checkpoint

from megatron_hybrid import ops
from megatron_hybrid.layers.core_attention import causal_attention


class FullWidthRMSNorm(torch.nn.Module):
    """RMSNorm over a feature dim that tensor parallelism splits across ranks.

    Holds this rank's slice of the weight (tagged as TP-sharded along dim 0); the mean square
    is taken over the full, unsplit width.
    """

    def __init__(self, config, local_width: int, full_width: int, eps: float, tp_group):
        super().__init__()
        self.eps = eps
        self.full_width = full_width
        self.tp_group = tp_group
        self.weight = torch.nn.Parameter(torch.ones(local_width, dtype=config.params_dtype))
        self.weight.tensor_model_parallel = True
        self.weight.partition_dim = 0
        self.weight.partition_stride = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # fused Triton kernels on CUDA (the row sums all-reduced over TP between them), torch ops on the CPU
        return ops.rms_norm(x, self.weight, self.eps, self.full_width, self.tp_group)

    def sharded_state_dict(self, prefix="", sharded_offsets=(), metadata=None):
        state = self.state_dict(prefix="", keep_vars=True)
        return make_sharded_tensors_for_checkpoint(
            state, prefix, {"weight": 0}, sharded_offsets, tp_group=self.tp_group, dp_cp_group=_dp_cp_group(metadata)
        )


def _dp_cp_group(metadata):
    return ensure_metadata_has_dp_cp_group(metadata)["dp_cp_group"]


def rope_tables(freqs: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos``, ``sin`` ``[s, d]`` fp32 of Megatron's rotary angles ``[s, 1, 1, d]``."""
    # Megatron keeps inv_freq outside the module's buffers: a model built on the CPU and moved
    # to the GPU still produces CPU frequencies.
    freqs = freqs.to(device=device, dtype=torch.float32).flatten(1)
    return freqs.cos(), freqs.sin()


@dataclass
class OlmoAttentionSubmodules:
    linear_qkv: type | object = None
    linear_proj: type | object = None
    post_norm: type | object = IdentityOp
    """RMSNorm for post-norm ("reordered") blocks, IdentityOp for pre-norm blocks."""


class OlmoSelfAttention(MegatronModule):
    """Causal self-attention with full-width QK norm, optional window and post-norm."""

    def __init__(
        self,
        config,
        submodules: OlmoAttentionSubmodules,
        layer_number: int,
        sliding_window: int | None = None,
        pg_collection: ProcessGroupCollection | None = None,
        **unused,
    ):
        super().__init__(config=config)
        pg_collection = pg_collection or ProcessGroupCollection.use_mpu_process_groups()
        self.tp_group = pg_collection.tp
        tp_size = self.tp_group.size() if self.tp_group is not None else 1
        self.layer_number = layer_number
        self.sliding_window = sliding_window
        self.head_dim = config.kv_channels
        self.num_heads_local_tp = config.num_attention_heads // tp_size
        self.num_groups_local_tp = config.num_query_groups // tp_size
        q_width = config.num_attention_heads * self.head_dim
        kv_width = config.num_query_groups * self.head_dim

        self.linear_qkv = build_module(
            submodules.linear_qkv,
            config.hidden_size,
            q_width + 2 * kv_width,
            config=config,
            init_method=config.init_method,
            gather_output=False,
            bias=False,
            skip_bias_add=False,
            is_expert=False,
            tp_comm_buffer_name="qkv",
            tp_group=self.tp_group,
        )
        self.q_norm = FullWidthRMSNorm(config, q_width // tp_size, q_width, config.layernorm_epsilon, self.tp_group)
        self.k_norm = FullWidthRMSNorm(config, kv_width // tp_size, kv_width, config.layernorm_epsilon, self.tp_group)
        self.linear_proj = build_module(
            submodules.linear_proj,
            q_width,
            config.hidden_size,
            config=config,
            init_method=config.output_layer_init_method,
            bias=False,
            input_is_parallel=True,
            skip_bias_add=True,
            is_expert=False,
            tp_comm_buffer_name="proj",
            tp_group=self.tp_group,
        )
        self.post_norm = build_module(
            submodules.post_norm, config=config, hidden_size=config.hidden_size, eps=config.layernorm_epsilon
        )

    def split_qkv(self, mixed: torch.Tensor):
        """``[s, b, groups x (q heads/group + 2) x d]`` -> q ``[s, b, hq*d]``, k, v ``[s, b, hkv*d]``."""
        s, b, _ = mixed.shape
        per_group = self.num_heads_local_tp // self.num_groups_local_tp
        mixed = mixed.view(s, b, self.num_groups_local_tp, per_group + 2, self.head_dim)
        q, k, v = mixed.split([per_group, 1, 1], dim=3)
        return q.reshape(s, b, -1), k.reshape(s, b, -1), v.reshape(s, b, -1)

    def forward(self, hidden_states, attention_mask=None, rotary_pos_emb=None, packed_seq_params=None, **unused):
        if packed_seq_params is not None:
            raise ValueError(
                "OlmoSelfAttention does not take packed sequences (packed_seq_params); Olmo's stage-1 "
                "recipe trains without document masking: pass packed_seq_params=None"
            )
        mixed, _ = self.linear_qkv(hidden_states)
        q, k, v = self.split_qkv(mixed)
        q, k = self.q_norm(q), self.k_norm(k)  # over the full width, before the head split
        s, b, _ = q.shape
        q = q.view(s, b, self.num_heads_local_tp, self.head_dim)
        k = k.view(s, b, self.num_groups_local_tp, self.head_dim)
        v = v.view(s, b, self.num_groups_local_tp, self.head_dim)
        if rotary_pos_emb is not None:
            freqs = rotary_pos_emb[0] if isinstance(rotary_pos_emb, tuple) else rotary_pos_emb
            cos, sin = rope_tables(freqs[:s], q.device)
            q, k = ops.rope(q, cos, sin), ops.rope(k, cos, sin)
        # [s, b, h, d] -> [b, h, s, d]
        q, k, v = (t.permute(1, 2, 0, 3) for t in (q, k, v))
        out = causal_attention(q, k, v, scale=self.head_dim**-0.5, window=self.sliding_window)
        out = out.permute(2, 0, 1, 3).reshape(s, b, -1)
        out, bias = self.linear_proj(out)
        return self.post_norm(out), bias
