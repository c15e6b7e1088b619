"""Language-model loss with Olmo's z-loss, on logits that may be split over the vocabulary (TP).

The model's last stage returns logits sharded along the vocabulary across tensor-parallel ranks
(Megatron's ``parallel_output``). Cross-entropy and the z-loss both need ``logsumexp`` over the
*full* vocabulary, so it is computed once, with a max and a sum all-reduced over the TP group,
and shared: ``ce = lse - logit[target]`` and ``z = lse^2``. Everything runs in fp32 whatever the
model's dtype (bf16 logits would lose the small probabilities that the z-loss acts on).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.tensor_parallel.mappings import reduce_from_tensor_model_parallel_region


def vocab_parallel_lse_and_target(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``logsumexp`` over the full vocabulary and the target's logit, for vocab-sharded logits.

    logits: [..., V / tp] (this rank's vocabulary slice), targets: [...] global ids.
    The all-reduces forward-sum and backward-pass-through, which is the right gradient because
    every TP rank computes the same loss from the reduced values.
    """
    logits = logits.float()
    tp = parallel_state.get_tensor_model_parallel_world_size()
    local_vocab = logits.shape[-1]
    start = parallel_state.get_tensor_model_parallel_rank() * local_vocab
    # The max only keeps exp() in range; it is a constant for autograd.
    max_logit = logits.detach().amax(dim=-1)
    if tp > 1:
        dist.all_reduce(max_logit, op=dist.ReduceOp.MAX, group=parallel_state.get_tensor_model_parallel_group())
    sum_exp = torch.exp(logits - max_logit.unsqueeze(-1)).sum(dim=-1)
    local = targets - start
    in_slice = (local >= 0) & (local < local_vocab)
    target_logit = torch.gather(logits, -1, local.clamp(0, local_vocab - 1).unsqueeze(-1)).squeeze(-1)
    target_logit = target_logit * in_slice
    if tp > 1:
        sum_exp = reduce_from_tensor_model_parallel_region(sum_exp)
        target_logit = reduce_from_tensor_model_parallel_region(target_logit)
    return max_logit + torch.log(sum_exp), target_logit


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, z_loss_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cross-entropy and z-loss terms (both fp32, shape of ``targets``).

    The training objective is ``ce + z_loss_weight * lse^2``; the second return value is the
    weighted z term so it can be logged on its own.
    """
    lse, target_logit = vocab_parallel_lse_and_target(logits, targets)
    return lse - target_logit, z_loss_weight * lse.square()
