"""RMSNorm as Olmo computes it: in fp32, then scaled by the weight and cast back.

Megatron's local norm (``WrappedTorchNorm``) computes in the input dtype and refuses
``sequence_parallel=True``; this one matches ``transformers``' ``Olmo3RMSNorm`` bit for bit in
fp32 and tags its weight for Megatron's sequence-parallel gradient all-reduce.
"""

from __future__ import annotations

import torch
from megatron.core import parallel_state
from megatron.core.transformer.transformer_config import TransformerConfig
from megatron.core.transformer.utils import ensure_metadata_has_dp_cp_group, make_sharded_tensors_for_checkpoint

from megatron_hybrid import ops


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``weight * x / sqrt(mean(x^2) + eps)``, normalised in fp32, returned in ``x.dtype`` (one fused Triton kernel
    each way on CUDA, torch ops on the CPU: ``ops.rms_norm``)."""
    return ops.rms_norm(x, weight, eps)


class RMSNorm(torch.nn.Module):
    """Megatron-style norm module: built as ``RMSNorm(config=..., hidden_size=..., eps=...)``."""

    def __init__(self, config: TransformerConfig, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(hidden_size, dtype=config.params_dtype))
        # Under sequence parallelism each TP rank sees different tokens, so the replicated
        # weight's gradient must be all-reduced across TP (finalize_model_grads does it for
        # parameters carrying this attribute).
        self.weight.sequence_parallel = config.sequence_parallel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)

    def sharded_state_dict(self, prefix="", sharded_offsets=(), metadata=None):
        # Replicated across TP: name the TP group so that only TP rank 0 writes it (callers
        # such as Megatron's MLP pass no group, which would make every TP rank a writer).
        metadata = ensure_metadata_has_dp_cp_group(metadata)
        return make_sharded_tensors_for_checkpoint(
            self.state_dict(prefix="", keep_vars=True),
            prefix,
            {},
            sharded_offsets,
            tp_group=parallel_state.get_tensor_model_parallel_group(),
            dp_cp_group=metadata["dp_cp_group"],
        )

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.eps}"
