"""Language-model loss with Olmo's z-loss, on logits that may be split over the vocabulary (TP).

The model's last stage returns logits sharded along the vocabulary across tensor-parallel ranks
(Megatron's ``parallel_output``). Cross-entropy and the z-loss both need ``logsumexp`` over the
*full* vocabulary, so it is computed once (``ops.cross_entropy``) and shared:
``ce = lse - logit[target]`` and ``z = lse^2``. Everything runs in fp32 whatever the model's dtype
(bf16 logits would lose the small probabilities that the z-loss acts on).
"""

from __future__ import annotations

import torch
from megatron.core import parallel_state

from megatron_hybrid.ops.cross_entropy import vocab_parallel_lse


def lm_loss(
    logits: torch.Tensor, targets: torch.Tensor, z_loss_weight: float, fused: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cross-entropy and z-loss terms (both fp32, shape of ``targets``).

    The training objective is ``ce + z_loss_weight * lse^2``; the second return value is the
    weighted z term so it can be logged on its own. ``fused``: the Triton kernels, which write the
    logits' gradient over the logits (the caller must not read them after the loss).
    """
    group = parallel_state.get_tensor_model_parallel_group()
    lse, target_logit = vocab_parallel_lse(logits, targets, group, inplace_backward=fused, fused=fused)
    return lse - target_logit, z_loss_weight * lse.square()
