"""The chunked gated delta rule in plain PyTorch (the CPU path; autograd by torch).

Same math as the Triton kernels (see README.md): per chunk of C tokens the WY form
``w = (I + A)^-1 (beta * exp(G) * k)``, ``u = (I + A)^-1 (beta * v)`` with
``A_ij = beta_i (k_i . k_j) exp(G_i - G_j)`` (i > j), then a sequential pass over chunks for the state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .naive import l2norm_ref


def _chunk_core(q, k, v, g, beta, scale, h0, chunk_size):
    """q, k [B, HV, T, K]; v [B, HV, T, V]; g, beta [B, HV, T] (all fp32); h0 [B, HV, K, V] or None."""
    B, HV, T, K = k.shape
    V = v.shape[-1]
    C = chunk_size
    pad = (-T) % C
    if pad:
        # Padded tokens have k = v = q = 0, beta = 0 and g = 0: they leave the state unchanged.
        q, k, v = (F.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
        g, beta = F.pad(g, (0, pad)), F.pad(beta, (0, pad))
    NT = (T + pad) // C
    q, k, v = (x.reshape(B, HV, NT, C, -1) for x in (q, k, v))
    g, beta = g.reshape(B, HV, NT, C), beta.reshape(B, HV, NT, C)
    G = g.cumsum(-1)
    idx = torch.arange(C, device=q.device)
    strict = idx[:, None] > idx[None, :]
    causal = idx[:, None] >= idx[None, :]
    diff = G[..., :, None] - G[..., None, :]
    decay_strict = diff.masked_fill(~strict, float("-inf")).exp()
    decay_causal = diff.masked_fill(~causal, float("-inf")).exp()
    A = beta[..., None] * (k @ k.transpose(-1, -2)) * decay_strict
    eye = torch.eye(C, dtype=q.dtype, device=q.device)
    rhs = torch.cat([(beta * G.exp())[..., None] * k, beta[..., None] * v], -1)
    wu = torch.linalg.solve_triangular(eye + A, rhs, upper=False, unitriangular=True)
    w, u = wu[..., :K], wu[..., K:]
    S = q.new_zeros(B, HV, K, V) if h0 is None else h0
    outs = []
    for c in range(NT):
        v_new = u[:, :, c] - w[:, :, c] @ S
        qc, kc, Gc = q[:, :, c], k[:, :, c], G[:, :, c]
        o = (qc * Gc.exp()[..., None]) @ S + ((qc @ kc.transpose(-1, -2)) * decay_causal[:, :, c]) @ v_new
        outs.append(o * scale)
        g_last = Gc[..., -1:]
        S = S * g_last.exp()[..., None] + (kc * (g_last - Gc).exp()[..., None]).transpose(-1, -2) @ v_new
    o = torch.stack(outs, 2).reshape(B, HV, NT * C, V)[:, :, :T]
    return o, S


def torch_chunk_gated_delta_rule(
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
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunked gated delta rule in PyTorch; same signature and semantics as ``chunk_gated_delta_rule``."""
    B, T, H, K = k.shape
    HV = v.shape[2]
    scale = K**-0.5 if scale is None else scale
    o_dtype = v.dtype
    ct = torch.float64 if q.dtype == torch.float64 else torch.float32
    if use_qk_l2norm:
        q, k = l2norm_ref(q.to(ct)), l2norm_ref(k.to(ct))
    group = HV // H
    q = q.to(ct).repeat_interleave(group, dim=2).transpose(1, 2)
    k = k.to(ct).repeat_interleave(group, dim=2).transpose(1, 2)
    v = v.to(ct).transpose(1, 2)
    g = g.to(ct).transpose(1, 2)
    beta = beta.to(ct).transpose(1, 2)
    h0 = None if initial_state is None else initial_state.to(ct)
    if cu_seqlens is None:
        o, S = _chunk_core(q, k, v, g, beta, scale, h0, chunk_size)
    else:
        offs = cu_seqlens.tolist()
        outs, states = [], []
        for n in range(len(offs) - 1):
            sl = slice(offs[n], offs[n + 1])
            o_n, S_n = _chunk_core(
                q[:, :, sl], k[:, :, sl], v[:, :, sl], g[:, :, sl], beta[:, :, sl], scale,
                None if h0 is None else h0[n : n + 1], chunk_size,
            )  # fmt: skip
            outs.append(o_n)
            states.append(S_n)
        o = torch.cat(outs, 2)
        S = torch.cat(states, 0)
    final = None
    if output_final_state:
        final = S if ct == torch.float64 else S.float()
    return o.transpose(1, 2).to(o_dtype), final
