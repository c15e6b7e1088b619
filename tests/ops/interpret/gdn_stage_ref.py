"""fp64 references of single backward kernels, on the kernels' own inputs (not a test module; imported by tests).

``chunk_bwd_dqk`` and ``chunk_wy_bwd`` compute only in fp32 (tf32 dots) from what they are given, so comparing each
against fp64 on the same inputs isolates that kernel's own error from the roundings upstream of it (bf16 h, dh,
v_new, dv2). Same math as README.md; B sequences of T tokens (no cu_seqlens); HV a multiple of H.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

C = 64


def _chunks(x: torch.Tensor, nt: int) -> torch.Tensor:
    """[B, T, HV, *] -> [B, HV, NT, C, *] in fp64, zero-padded."""
    x = torch.nan_to_num(x.double().transpose(1, 2))
    pad = nt * C - x.shape[2]
    if x.dim() == 3:
        return F.pad(x, (0, pad)).reshape(*x.shape[:2], nt, C)
    return F.pad(x, (0, 0, 0, pad)).reshape(*x.shape[:2], nt, C, x.shape[-1])


def _unchunk(x: torch.Tensor, T: int) -> torch.Tensor:
    B, HV, NT = x.shape[:3]
    return x.reshape(B, HV, NT * C, *x.shape[4:])[:, :, :T].transpose(1, 2)


def _group(x: torch.Tensor, HV: int) -> torch.Tensor:
    return x.repeat_interleave(HV // x.shape[2], dim=2)


def _valid(B, T, HV, nt, device):
    return _chunks(torch.ones(B, T, HV, device=device), nt) > 0


def dqk_ref(q, k, gcum, h, dh, v_new, dv2, do, scale):
    """chunk_bwd_dqk: (dq per value head, dk_part, dw, dG summed over K blocks), fp64."""
    B, T, HV, V = v_new.shape
    K = q.shape[-1]
    nt = -(-T // C)
    valid = _valid(B, T, HV, nt, q.device)
    q, k = _chunks(_group(q, HV), nt), _chunks(_group(k, HV), nt)
    G = _chunks(gcum, nt)
    hh = h.double().reshape(B, nt, HV, K, V).transpose(1, 2)
    dhh = dh.double().reshape(B, nt, HV, K, V).transpose(1, 2)
    vn, d2, dO = _chunks(v_new, nt), _chunks(dv2, nt), _chunks(do, nt)
    tc = valid.sum(-1)
    Gl = G.gather(-1, (tc - 1).clamp(min=0)[..., None])[..., 0]
    eG = torch.where(valid, G.exp(), 0.0)
    el = torch.where(valid, (Gl[..., None] - G).exp(), 0.0)
    idx = torch.arange(C, device=q.device)
    causal = (idx[:, None] >= idx[None, :]) & valid[..., :, None] & valid[..., None, :]
    D = torch.where(causal, (G[..., :, None] - G[..., None, :]).clamp(max=0).exp(), 0.0)
    dqs = (dO @ hh.transpose(-1, -2)) * (eG * scale)[..., None]
    dP = (dO @ vn.transpose(-1, -2)) * D * scale
    dq = dqs + dP @ k
    dks = (vn @ dhh.transpose(-1, -2)) * el[..., None]
    dk = dP.transpose(-1, -2) @ q + dks
    dw = -(d2 @ hh.transpose(-1, -2))
    M = dP * (q @ k.transpose(-1, -2))
    s = (k * dks).sum(-1)
    dG = (q * dqs).sum(-1) + M.sum(-1) - M.sum(-2) - s
    last = idx == (tc - 1)[..., None]
    dG = dG + torch.where(last, (Gl.exp() * (hh * dhh).sum((-1, -2)) + s.sum(-1))[..., None], 0.0)
    return _unchunk(dq, T), _unchunk(dk, T), _unchunk(dw, T), _unchunk(dG, T)


def wy_bwd_ref(k, v, beta, gcum, Ai, dw, dv2, dk_part, dgp):
    """chunk_wy_bwd: (dk per value head, dv, dbeta, dg), fp64, with T = Ai as the forward stored it."""
    B, T, HV, V = v.shape
    nt = -(-T // C)
    valid = _valid(B, T, HV, nt, v.device)
    m2 = valid[..., :, None] & valid[..., None, :]
    k, v = _chunks(_group(k, HV), nt), _chunks(v, nt)
    beta, G = _chunks(beta, nt), _chunks(gcum, nt)
    Tm = torch.where(m2, _chunks(Ai, nt), 0.0)
    dw, du, dkp = _chunks(dw, nt), _chunks(dv2, nt), _chunks(dk_part, nt)
    dG = _chunks(dgp.sum(0), nt)
    eG = torch.where(valid, G.exp(), 0.0)
    gb = beta * eG
    TT = Tm.transpose(-1, -2)
    dXw, dXu = TT @ dw, TT @ du
    dT = dw @ (gb[..., None] * k).transpose(-1, -2) + du @ (beta[..., None] * v).transpose(-1, -2)
    dA = -(TT @ dT @ TT)
    idx = torch.arange(C, device=v.device)
    strict = (idx[:, None] > idx[None, :]) & m2
    Bm = dA * torch.where(strict, (G[..., :, None] - G[..., None, :]).clamp(max=0).exp(), 0.0)
    kk = k @ k.transpose(-1, -2)
    Bb = Bm * beta[..., :, None]
    dk = dkp + dXw * gb[..., None] + Bb @ k + Bb.transpose(-1, -2) @ k
    r = (k * dXw).sum(-1)
    dbeta = (dXu * v).sum(-1) + (Bm * kk).sum(-1) + eG * r
    dAA = Bm * kk * beta[..., :, None]
    dG = dG + dAA.sum(-1) - dAA.sum(-2) + gb * r
    dg = dG.flip(-1).cumsum(-1).flip(-1)
    return _unchunk(dk, T), _unchunk(beta[..., None] * dXu, T), _unchunk(dbeta, T), _unchunk(dg, T)
