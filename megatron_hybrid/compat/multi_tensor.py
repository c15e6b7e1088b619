"""The optimizer's multi-tensor ops on torch's ``_foreach`` kernels when neither apex nor Transformer Engine is there.

Megatron's fallbacks for apex's ``amp_C.multi_tensor_l2norm`` and ``multi_tensor_scale`` loop over the tensors in
Python: the grad-norm one launches a norm per tensor and then builds a tensor from the list of CUDA scalars (one
device-to-host copy per parameter, ~300 per step for the 7B model, with the GPU idle in between), and the scale one
writes ``src * scale`` to a temporary before copying it (clipping the gradients, and copying the fp32 main params to
the bf16 model params after every step). These do the same with torch's multi-tensor kernels: the norm stays on the
device, and scaling by 1 is a plain (casting) copy.

``install()`` swaps them into Megatron's optimizer modules where Megatron fell back to its local versions; with apex
or TE present, nothing changes.
"""

from __future__ import annotations

import torch


def multi_tensor_l2norm(chunk_size, noop_flag, tensor_lists, per_tensor, *args):
    """amp_C's interface: (the l2 norm of all of ``tensor_lists[0]`` as a 1-element fp32 tensor, None)."""
    tensors = tensor_lists[0]
    if not tensors:
        return torch.zeros(1, dtype=torch.float32, device=noop_flag.device), None
    norms = torch._foreach_norm(tensors)  # one 0-dim tensor each, on the tensors' device
    return torch.linalg.vector_norm(torch.stack(norms).float()).reshape(1), None


def multi_tensor_scale(chunk_size, noop_flag, tensor_lists, scale):
    """amp_C's interface: ``dst = src * scale`` for each pair of ``tensor_lists = [srcs, dsts]`` (casting to dst's
    dtype); in place when they are the same tensors."""
    srcs, dsts = tensor_lists
    if not srcs:
        return
    if all(s is d for s, d in zip(srcs, dsts)):
        torch._foreach_mul_(dsts, scale)
    elif isinstance(scale, (int, float)) and scale == 1.0:
        torch._foreach_copy_(dsts, srcs)
    else:
        torch._foreach_copy_(dsts, torch._foreach_mul(srcs, scale))


def install() -> bool:
    """Use these in Megatron's optimizer modules where Megatron took its local fallbacks; True when it did."""
    from megatron.core import utils
    from megatron.core.optimizer import clip_grads, optimizer

    installed = False
    if clip_grads.l2_norm_impl is utils.local_multi_tensor_l2_norm:
        clip_grads.l2_norm_impl = multi_tensor_l2norm
        installed = True
    for module in (clip_grads, optimizer):
        if getattr(module, "multi_tensor_scale_impl", None) is utils.local_multi_tensor_scale:
            module.multi_tensor_scale_impl = multi_tensor_scale
            installed = True
    return installed
