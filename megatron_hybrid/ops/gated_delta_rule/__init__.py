"""Gated delta rule: Triton chunked forward/backward, decoding recurrence, naive and torch-chunked references."""

from __future__ import annotations

import torch

from .chunk import check_inputs, chunk_gated_delta_rule
from .fused_recurrent import fused_recurrent_gated_delta_rule
from .naive import naive_recurrent_gated_delta_rule
from .torch_chunk import torch_chunk_gated_delta_rule
from .utils import is_interpret


def gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    cu_seqlens: torch.Tensor | None = None,
    use_qk_l2norm: bool = False,
    keep_states: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The op the model layer calls: Triton kernels on CUDA (or under TRITON_INTERPRET=1), torch chunked on CPU.
    ``keep_states`` is the Triton path's memory/time choice (see ``chunk_gated_delta_rule``)."""
    if q.is_cuda or is_interpret():
        return chunk_gated_delta_rule(
            q, k, v, g, beta, scale, initial_state, output_final_state, cu_seqlens, use_qk_l2norm, keep_states
        )
    check_inputs(q, k, v, g, beta, initial_state, cu_seqlens)
    return torch_chunk_gated_delta_rule(
        q, k, v, g, beta, scale, initial_state, output_final_state, cu_seqlens, use_qk_l2norm
    )


__all__ = [
    "chunk_gated_delta_rule",
    "fused_recurrent_gated_delta_rule",
    "gated_delta_rule",
    "naive_recurrent_gated_delta_rule",
    "torch_chunk_gated_delta_rule",
]
