"""Causal softmax attention, full or sliding-window, without Transformer Engine.

Inputs are ``[b, h, s, d]``. Full causal attention goes to torch SDPA (flash on the GPU). A
sliding window (a query sees itself and ``window - 1`` earlier tokens, as ``transformers``'
Olmo 3 defines it) goes to FlexAttention with a block mask on CUDA, and elsewhere to a banded
SDPA that processes ``window``-sized query blocks against their ``2 * window`` key band: memory
O(s * window), never an ``s x s`` mask.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, window: int | None = None
) -> torch.Tensor:
    """softmax(q k^T * scale + causal[/window] mask) v for ``[b, h, s, d]`` tensors (MHA or GQA)."""
    seq = q.shape[2]
    if k.shape[1] != q.shape[1]:  # grouped query attention: share each kv head across its group
        reps = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(reps, dim=1), v.repeat_interleave(reps, dim=1)
    if window is None or window >= seq:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    if q.is_cuda and _flex_supports(q.shape[-1]) and _flex_attention() is not None:
        return _flex_sliding_window(q, k, v, scale, window)
    return banded_sliding_window(q, k, v, scale, window)


def banded_sliding_window(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, window: int):
    """Sliding-window attention in query blocks of ``window`` rows against a 2*window key band."""
    seq = q.shape[2]
    block = window
    outputs = []
    for start in range(0, seq, block):
        stop = min(start + block, seq)
        key_start = max(0, start - window + 1)
        q_pos = torch.arange(start, stop, device=q.device)[:, None]
        k_pos = torch.arange(key_start, stop, device=q.device)[None, :]
        allowed = (k_pos <= q_pos) & (k_pos > q_pos - window)
        outputs.append(
            F.scaled_dot_product_attention(
                q[:, :, start:stop],
                k[:, :, key_start:stop],
                v[:, :, key_start:stop],
                attn_mask=allowed,
                scale=scale,
            )
        )
    return torch.cat(outputs, dim=2)


def _flex_supports(head_dim: int) -> bool:
    """FlexAttention's Triton kernels take power-of-two head dims of at least 16."""
    return head_dim >= 16 and head_dim & (head_dim - 1) == 0


@functools.cache
def _flex_attention():
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except ImportError:  # torch without FlexAttention: the banded path is used
        return None
    return torch.compile(flex_attention, dynamic=False), create_block_mask


@functools.lru_cache(maxsize=32)
def _sliding_block_mask(seq: int, window: int, device: torch.device):
    _, create_block_mask = _flex_attention()

    def sliding_causal(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & (kv_idx > q_idx - window)

    return create_block_mask(sliding_causal, B=None, H=None, Q_LEN=seq, KV_LEN=seq, device=device)


def _flex_sliding_window(q, k, v, scale, window):
    flex_attention, _ = _flex_attention()
    mask = _sliding_block_mask(q.shape[2], window, q.device)
    return flex_attention(q, k, v, block_mask=mask, scale=scale)
