"""The project's ops: the gated delta rule (Triton on CUDA, torch on CPU) and the small fused ops around it.

Shapes follow ``[B, T, H, D]``. Every public op dispatches the same way: Triton kernels when the tensors are on CUDA
(or when TRITON_INTERPRET=1), a PyTorch implementation of the same math on CPU.
"""

from .conv1d import causal_conv1d
from .cross_entropy import vocab_parallel_lse
from .gated_delta_rule import (
    chunk_gated_delta_rule,
    fused_recurrent_gated_delta_rule,
    gated_delta_rule,
    naive_recurrent_gated_delta_rule,
    torch_chunk_gated_delta_rule,
)
from .gates import gdn_gates
from .gdn_mixer import gdn_mixer
from .norms import gated_rms_norm, l2norm, rms_norm
from .rope import rope
from .swiglu import swiglu

__all__ = [
    "causal_conv1d",
    "chunk_gated_delta_rule",
    "fused_recurrent_gated_delta_rule",
    "gated_delta_rule",
    "gated_rms_norm",
    "gdn_gates",
    "gdn_mixer",
    "l2norm",
    "naive_recurrent_gated_delta_rule",
    "rms_norm",
    "rope",
    "swiglu",
    "torch_chunk_gated_delta_rule",
    "vocab_parallel_lse",
]
