"""The fp32 token-by-token reference for the gated delta rule: slow, obvious, and what everything is checked against.

    S_t = exp(g_t) S_{t-1} + k_t (beta_t (v_t - (exp(g_t) S_{t-1})^T k_t))^T,     o_t = scale * S_t^T q_t

q, k ``[B, T, H, K]``; v ``[B, T, HV, V]`` (HV a multiple of H: value head ``i`` reads key head ``i // (HV // H)``);
g and beta ``[B, T, HV]``; states ``[N, HV, K, V]`` in fp32.
"""

from __future__ import annotations

import torch


def l2norm_ref(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / sqrt(sum(x^2) + eps) over the last dim, in fp32, returned in x's dtype."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).sum(-1, keepdim=True) + eps)).to(x.dtype)


def naive_recurrent_gated_delta_rule(
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
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Reference recurrence (differentiable by autograd). Computes in fp32 (fp64 if given fp64); o in v's dtype."""
    B, T, H, K = k.shape
    HV, V = v.shape[2], v.shape[3]
    scale = K**-0.5 if scale is None else scale
    ct = torch.float64 if q.dtype == torch.float64 else torch.float32
    o_dtype = v.dtype
    if use_qk_l2norm:
        q, k = l2norm_ref(q.to(ct)), l2norm_ref(k.to(ct))
    group = HV // H
    q = q.to(ct).repeat_interleave(group, dim=2)
    k = k.to(ct).repeat_interleave(group, dim=2)
    v, g, beta = v.to(ct), g.to(ct), beta.to(ct)
    if cu_seqlens is None:
        bounds = [(b, 0, T) for b in range(B)]
    else:
        offs = cu_seqlens.tolist()
        bounds = [(0, offs[n], offs[n + 1]) for n in range(len(offs) - 1)]
    outs = [None] * len(bounds)
    finals = []
    for n, (b, bos, eos) in enumerate(bounds):
        if initial_state is not None:
            S = initial_state[n].to(ct)
        else:
            S = q.new_zeros(HV, K, V)
        o_seq = []
        for t in range(bos, eos):
            S = S * g[b, t].exp()[:, None, None]
            kt, vt, qt = k[b, t], v[b, t], q[b, t]
            u = beta[b, t][:, None] * (vt - torch.einsum("hkv,hk->hv", S, kt))
            S = S + kt[:, :, None] * u[:, None, :]
            o_seq.append(torch.einsum("hkv,hk->hv", S, qt) * scale)
        outs[n] = torch.stack(o_seq, 0) if o_seq else q.new_zeros(0, HV, V)
        finals.append(S)
    if cu_seqlens is None:
        o = torch.stack(outs, 0)
    else:
        o = torch.cat(outs, 0)[None]
    final = torch.stack(finals, 0) if output_final_state else None
    if final is not None and ct != torch.float64:
        final = final.float()
    return o.to(o_dtype), final
