"""Chunked gated delta rule with Triton forward and backward: host passes, the autograd Function, the public op.

Forward:  wy (cumsum g, T = (I + A)^-1; then w, u)  ->  chunk_h (h per chunk, v_new, final state)  ->  chunk_o (o)
Backward: [wy (w again from the kept T)]  ->  chunk_h backward (dh per chunk, dv2 with the intra-chunk part fused in,
          dh0)  ->  chunk_bwd_dqk (dq, dw, the output/state part of dk and dG)  ->  wy backward (dk, dv, dbeta, dg).
Kept between forward and backward: g's chunk-local cumsum, T ([B, T, HV, 64], fp32; fp16 opt-in, see wy.py),
and by default the per-chunk states h ([NT, HV, K, V]), v_new ([B, T, HV, V]) and w ([B, T, HV, K]), all in the input
dtype, exactly as the forward computed them: the backward then starts at the reverse state pass. With them, where the
reverse pass has programs enough (``keeps_qk``), the chunks' q k^T * D ([B, T, HV, 64], 31 MB at T=8192, H=30), from
which the reverse pass forms dv2's intra-chunk part (otherwise a separate kernel computes it from q and k).
With keep_states=False (the model layer's choice) or MEGATRON_HYBRID_GDN_RECOMPUTE_H=1 (read at each forward) they are
not kept and the backward recomputes them (wy for w and u, then a second sequential state pass): less activation
memory (h is K*V/64 per token and head, 141 MB in bf16 at T=8192, H=30, K=96, V=192, v_new 94 MB, w 47 MB), one more
sequential pass of time.
With MEGATRON_HYBRID_GDN_SPLIT_STATE=1 (or fwd / bwd; read at each forward, default off) the state passes run
sequence-split (``split_state.py``): for few heads, when the automatic plan (or MEGATRON_HYBRID_GDN_SPLIT_SEGMENTS)
gives some sequence >= 2 segments; otherwise the one-level kernels run.
"""

from __future__ import annotations

import os

import torch
import triton

from .chunk_bwd import chunk_bwd_dqk, chunk_bwd_dqk_kernel  # noqa: F401
from .chunk_h import chunk_bwd_dh, chunk_bwd_dh_kernel, chunk_fwd_h, chunk_fwd_h_kernel  # noqa: F401
from .chunk_o import chunk_fwd_o, chunk_fwd_o_kernel  # noqa: F401
from .split_state import chunk_bwd_dh_split, chunk_fwd_h_split, plan_segments, split_modes
from .utils import num_sms, prepare_chunks
from .wy import chunk_wy_bwd, chunk_wy_bwd_kernel, chunk_wy_fwd, chunk_wy_fwd_kernel, chunk_wy_solve_kernel  # noqa: F401

MAX_HEAD_DIM = 256


def _meta(B, T, cu_seqlens):
    N, NT, chunk_indices, chunk_offsets = prepare_chunks(B, T, cu_seqlens)
    nt_total = NT if cu_seqlens is not None else B * NT
    return {
        "N": N,
        "NT": NT,
        "NT_total": nt_total,
        "cu_seqlens": cu_seqlens,
        "chunk_indices": chunk_indices,
        "chunk_offsets": chunk_offsets,
    }


def keep_states_default(keep_states: bool | None) -> bool:
    """An explicit ``keep_states`` wins; None keeps h, v_new and w unless MEGATRON_HYBRID_GDN_RECOMPUTE_H=1."""
    if keep_states is None:
        return os.environ.get("MEGATRON_HYBRID_GDN_RECOMPUTE_H", "0") != "1"
    return bool(keep_states)


def _split_plan(meta, q, v):
    """Decide the sequence-split state passes for this call (MEGATRON_HYBRID_GDN_SPLIT_STATE), once: stored in meta,
    which the backward gets through ctx."""
    if "split_modes" not in meta:
        modes = split_modes()
        plan = plan_segments(meta, v.shape[2], v.shape[3], q.device) if modes else None
        meta["split_modes"] = modes if plan is not None else frozenset()
        meta["split_plan"] = plan
    return meta["split_modes"], meta["split_plan"]


def _fwd_h(k, w, u, gcum, initial_state, output_final_state, meta):
    if "fwd" in meta.get("split_modes", ()):
        return chunk_fwd_h_split(k, w, u, gcum, initial_state, output_final_state, meta, meta["split_plan"])
    return chunk_fwd_h(k, w, u, gcum, initial_state, output_final_state, meta)


ENV_KEEP_QK = "MEGATRON_HYBRID_GDN_KEEP_QK"
KEEP_QK_PROGRAMS_PER_SM = 1  # "auto": keep q k^T * D when the reverse pass has this many 16-wide V-block programs


def keeps_qk(meta: dict, HV: int, V: int, device: torch.device) -> bool:
    """Whether a forward that keeps its states also keeps the chunks' q k^T * D (``MEGATRON_HYBRID_GDN_KEEP_QK``:
    auto (default), 1, 0). The backward's reverse pass then forms dv2's intra-chunk part itself: one [64, 64] x
    [64, BV] product per sequential step in place of ``chunk_bwd_dv_local``, a parallel kernel whose time grows with
    the heads (0.16 ms at T=8192, 30 heads; 0.08 at 15). Measured (H100, autotuned, CUDA-graph replay,
    bench/results/gpu_check/session19/callA): reverse pass from the kept product 0.434 ms at 30 heads and 0.313 at 15,
    against 0.569 / 0.350 for dv_local and the pass fed by it; fwd_o +0.016 / +0.008 ms for the extra store. So
    "auto" keeps it when the reverse pass has a program per SM (360 programs at 30 heads, 180 at 15), and never with
    the split reverse pass (which takes dvl). Fewer programs (a few heads) were not timed; they keep the dv_local
    path."""
    mode = os.environ.get(ENV_KEEP_QK, "auto").strip().lower()
    if mode not in ("auto", "0", "1"):
        raise ValueError(f"{ENV_KEEP_QK} must be auto, 0 or 1; got {mode!r}")
    if "bwd" in meta.get("split_modes", ()) or mode == "0":
        return False
    return mode == "1" or meta["N"] * HV * triton.cdiv(V, 16) >= KEEP_QK_PROGRAMS_PER_SM * num_sms(device)


def chunk_gated_delta_rule_fwd(
    q, k, v, g, beta, scale, initial_state, output_final_state, meta, keep_w=False, qk_norm=None
):  # fmt: skip
    """Returns (o, gcum, Ai, final_state, h, v_new, w, Aqk); w is None unless ``keep_w`` (else freed before the output
    kernel allocates o), Aqk (the chunks' q k^T * D, for the backward's reverse pass) unless ``keep_w`` and
    ``keeps_qk``. With ``qk_norm = (q_out, k_out, rstd [2, B*T*H], eps)`` q and k are raw: the solve L2-normalises k
    and the output kernel q (the rows they load whole anyway) into q_out, k_out and rstd: no launch of their own."""
    _split_plan(meta, q, v)
    k_norm = None if qk_norm is None else (qk_norm[1], qk_norm[2][1], qk_norm[3])
    gcum, Ai, w, u = chunk_wy_fwd(k, v, g, beta, meta, k_norm=k_norm)
    if qk_norm is not None:
        k = qk_norm[1]
    h, v_new, final_state = _fwd_h(k, w, u, gcum, initial_state, output_final_state, meta)
    del u
    if not keep_w:
        w = None
    keep_qk = keep_w and keeps_qk(meta, v.shape[2], v.shape[3], v.device)
    q_norm = None if qk_norm is None else (qk_norm[0], qk_norm[2][0], qk_norm[3])
    o, Aqk = chunk_fwd_o(q, k, v_new, h, gcum, scale, meta, keep_qk=keep_qk, q_norm=q_norm)
    return o, gcum, Ai, final_state, h, v_new, w, Aqk


def chunk_gated_delta_rule_bwd(
    q, k, v, beta, gcum, Ai, scale, initial_state, do, dht, meta, h=None, v_new=None, dv_out=None, g=None, w=None,
    k_rstd=None, dk_out=None, Aqk=None, q_rstd=None, dq_out=None,
):  # fmt: skip
    """h and v_new as the forward computed them, or None to recompute them (the same kernels: identical values);
    likewise w, which is only taken with h (else the recompute of h makes it anyway), and Aqk (the forward's chunk
    q k^T * D: the reverse pass forms dv2's intra-chunk part from it instead of a separate kernel from q and k).
    With Ai (and gcum) None, the WY representation is recomputed from g: the forward's solve again, identical T.
    v may be a token-strided slice (``utils.token_stride``). dv goes into ``dv_out`` when given (same rule), or into
    what ``dv_out()`` returns when it is a callable: called once, right before the wy backward, after the per-chunk
    states are freed (so a caller's larger gradient buffer does not coexist with them). With ``k_rstd`` (k was
    L2-normalised, k = x * rstd; one value head per key head: ``folds_qk_norm``) the returned dk is x's gradient: the
    norm's backward runs in the wy backward, which writes it into ``dk_out`` when given (or what ``dk_out()`` returns,
    called right after ``dv_out()``); with ``q_rstd`` too, likewise for q (into ``dq_out``, the same rules; else in
    place)."""
    if h is None or w is None:
        if Ai is None:
            gcum, Ai, w, u = chunk_wy_fwd(k, v, g, beta, meta, need_u=h is None)
        else:
            _, _, w, u = chunk_wy_fwd(k, v, None, beta, meta, gcum=gcum, Ai=Ai, need_u=h is None)
        if h is None:
            h, v_new, _ = _fwd_h(k, w, u, gcum, initial_state, False, meta)
        del u
    if "bwd" in meta.get("split_modes", ()):
        dv2, dh, dh0 = chunk_bwd_dh_split(q, k, w, gcum, do, dht, initial_state, scale, meta, meta["split_plan"])
    else:
        dv2, dh, dh0 = chunk_bwd_dh(q, k, w, gcum, do, dht, initial_state, scale, meta, Aqk=Aqk)
    del w
    dq, dk_part, dw, dgp = chunk_bwd_dqk(q, k, gcum, h, dh, v_new, dv2, do, scale, meta)
    del h, dh, v_new
    if callable(dv_out):
        dv_out = dv_out()
    if callable(dk_out):
        dk_out = dk_out()
    q_norm = None
    if q_rstd is not None:
        dq_out = dq_out() if callable(dq_out) else dq if dq_out is None else dq_out
        q_norm, dq = (q, dq, q_rstd, dq_out), dq_out
    dk, dv, dbeta, dg = chunk_wy_bwd(
        k, v, beta, gcum, Ai, dw, dv2, dk_part, dgp, meta, dv_out=dv_out, k_rstd=k_rstd, dk_out=dk_out, q_norm=q_norm
    )
    B, T, H, K = q.shape
    HV = v.shape[2]
    if HV != H:
        dq = dq.view(B, T, H, HV // H, K).sum(3)
        dk = dk.view(B, T, H, HV // H, K).sum(3)
    return dq.to(q.dtype), dk.to(k.dtype), dv, dg, dbeta, dh0


def folds_qk_norm(q: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether the backward can fold the q/k L2-norm backward into the wy backward: one value head per key head (with
    grouped values dk is summed over each group afterwards, so k's norm backward must come after that sum; q's goes
    with it, in one launch)."""
    return v.shape[2] == q.shape[2]


def qk_l2norm_bwd(q, k, qk_rstd, dq, dk, outs=None):
    """The q/k L2-norm backward where the wy backward has not taken it (grouped value heads: ``folds_qk_norm``).
    q, k: the normalised [B, T, H, K]; qk_rstd [2, B*T*H]; dq, dk their gradients. The inputs' gradients go into
    ``outs`` ((q's, k's) [B*T, H, K] views, e.g. column slices of the conv input's gradient) when given, else into
    new tensors shaped as q. Returns them."""
    from ..norms import l2norm_bwd

    K = q.shape[-1]
    dxs = l2norm_bwd((q.view(-1, K), k.view(-1, K)), qk_rstd, (dq.reshape(-1, K), dk.reshape(-1, K)), outs)
    return dxs if outs is not None else tuple(x.view(q.shape) for x in dxs)


class ChunkGatedDeltaRuleFunction(torch.autograd.Function):
    """The op with q/k's L2 norm folded in (``qk_l2norm``): the solve normalises k and the output kernel q in the
    forward, and the wy backward takes both gradients back through the norms (one launch of their own with grouped
    value heads), with no autograd nodes of their own (the op's host time per call is what the GPU waits on at few
    heads: bench/gdn_kernels.py's host column)."""

    @staticmethod
    def forward(ctx, q, k, v, g, beta, scale, initial_state, output_final_state, cu_seqlens, keep_states, qk_l2norm):
        B, T, H, K = q.shape
        qk_rstd = qk_norm = None
        if qk_l2norm:  # in the solve (k) and the output kernel (q)
            from ..norms import L2NORM_EPS

            qk_rstd = torch.empty(2, B * T * H, dtype=torch.float32, device=q.device)
            qk_norm = (torch.empty_like(q), torch.empty_like(k), qk_rstd, L2NORM_EPS)
        meta = _meta(B, T, cu_seqlens)
        o, gcum, Ai, final_state, h, v_new, w, Aqk = chunk_gated_delta_rule_fwd(
            q, k, v, g, beta, scale, initial_state, output_final_state, meta, keep_w=keep_states, qk_norm=qk_norm
        )
        if qk_norm is not None:
            q, k = qk_norm[0], qk_norm[1]
        if not keep_states:
            h = v_new = None  # (w and Aqk are None already: keep_w=keep_states)
        ctx.save_for_backward(q, k, v, beta, gcum, Ai, initial_state, h, v_new, w, Aqk, qk_rstd)
        ctx.scale = scale
        ctx.meta = meta
        ctx.g_dtype = g.dtype
        return o, final_state

    @staticmethod
    def backward(ctx, do, dht):
        q, k, v, beta, gcum, Ai, initial_state, h, v_new, w, Aqk, qk_rstd = ctx.saved_tensors
        fold = qk_rstd is not None and folds_qk_norm(q, v)
        dq, dk, dv, dg, dbeta, dh0 = chunk_gated_delta_rule_bwd(
            q, k, v, beta, gcum, Ai, ctx.scale, initial_state, do.contiguous(),
            None if dht is None else dht.contiguous(), ctx.meta, h=h, v_new=v_new, w=w,
            k_rstd=qk_rstd[1] if fold else None, Aqk=Aqk, q_rstd=qk_rstd[0] if fold else None,
        )  # fmt: skip
        if qk_rstd is not None and not fold:  # (folded: the wy backward took dq and dk through the norms)
            dq, dk = qk_l2norm_bwd(q, k, qk_rstd, dq, dk)
        return dq, dk, dv, dg.to(ctx.g_dtype), dbeta, None, dh0, None, None, None, None


def check_inputs(q, k, v, g, beta, initial_state, cu_seqlens):
    """Raise ValueError with a clear message for inputs the kernels do not take."""
    tensors = {"q": q, "k": k, "v": v, "g": g, "beta": beta}
    for name, x in tensors.items():
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"q, k, v must be [B, T, H, D]; got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.shape != k.shape:
        raise ValueError(f"q and k must have the same shape, got {tuple(q.shape)} and {tuple(k.shape)}")
    B, T, H, K = k.shape
    if v.shape[:2] != (B, T):
        raise ValueError(f"v must be [B, T, HV, V] with B={B}, T={T}; got {tuple(v.shape)}")
    HV, V = v.shape[2], v.shape[3]
    if HV % H != 0:
        raise ValueError(f"value heads ({HV}) must be a multiple of key heads ({H})")
    if K > MAX_HEAD_DIM or V > MAX_HEAD_DIM:
        raise ValueError(f"head dims must be <= {MAX_HEAD_DIM}; got K={K}, V={V}")
    for name, x in (("g", g), ("beta", beta)):
        if x.shape != (B, T, HV):
            raise ValueError(f"{name} must be [B, T, HV] = {(B, T, HV)}, got {tuple(x.shape)}")
    devices = {x.device for x in tensors.values()}
    if len(devices) != 1:
        raise ValueError(f"all inputs must be on one device, got {sorted(str(d) for d in devices)}")
    if len({q.dtype, k.dtype, v.dtype}) != 1:
        raise ValueError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        raise ValueError(f"unsupported dtype {q.dtype}")
    N = B
    if cu_seqlens is not None:
        if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dtype != torch.int32:
            raise ValueError(
                f"cu_seqlens must be an int32 tensor, got {getattr(cu_seqlens, 'dtype', type(cu_seqlens))}"
            )
        if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
            raise ValueError("cu_seqlens must be 1-D with at least two entries")
        if B != 1:
            raise ValueError(f"with cu_seqlens the batch size must be 1, got B={B}")
        if cu_seqlens.device != q.device:
            raise ValueError(f"cu_seqlens is on {cu_seqlens.device}, inputs on {q.device}")
        offs = cu_seqlens.tolist()
        if offs[0] != 0 or offs[-1] != T:
            raise ValueError(f"cu_seqlens must start at 0 and end at T={T}; got {offs[0]} ... {offs[-1]}")
        if any(b > e for b, e in zip(offs[:-1], offs[1:])):
            raise ValueError("cu_seqlens must be non-decreasing")
        N = len(offs) - 1
    if initial_state is not None:
        if initial_state.shape != (N, HV, K, V):
            raise ValueError(f"initial_state must be [N, HV, K, V] = {(N, HV, K, V)}, got {tuple(initial_state.shape)}")
        if initial_state.device != q.device:
            raise ValueError(f"initial_state is on {initial_state.device}, inputs on {q.device}")


def chunk_gated_delta_rule(
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
    """Gated delta rule, chunked, Triton forward and backward.

    Args:
        q, k: ``[B, T, H, K]``; v: ``[B, T, HV, V]`` with HV a multiple of H; K, V <= 256.
        g: ``[B, T, HV]`` log decay (computed in fp32); beta: ``[B, T, HV]``.
        scale: defaults to ``K ** -0.5``.
        initial_state: ``[N, HV, K, V]`` (N = B, or the number of sequences with cu_seqlens), read in fp32.
        output_final_state: also return the final state ``[N, HV, K, V]`` fp32.
        cu_seqlens: int32 ``[N + 1]`` offsets of packed sequences (B must be 1); the state resets at each boundary.
        use_qk_l2norm: L2-normalise q and k per head first (x / sqrt(sum x^2 + 1e-6)).
        keep_states: keep the per-chunk states h, v_new and w for the backward (faster: no second sequential pass,
            no recompute of w) or recompute them there (K*V/64 + V + K values less per token and head held until the
            backward). None: keep, unless MEGATRON_HYBRID_GDN_RECOMPUTE_H=1.

    Returns:
        o ``[B, T, HV, V]`` in v's dtype, and the final state or None.
    """
    check_inputs(q, k, v, g, beta, initial_state, cu_seqlens)
    if q.device.type == "cpu":
        from .utils import is_interpret

        if not is_interpret():
            raise ValueError(
                "chunk_gated_delta_rule runs Triton kernels: inputs must be on CUDA (or TRITON_INTERPRET=1)"
            )
    if q.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"the Triton path takes fp32, fp16 or bf16 inputs, got {q.dtype}")
    scale = k.shape[-1] ** -0.5 if scale is None else float(scale)
    q, k, v, beta = (x.contiguous() for x in (q, k, v, beta))
    g = g.float().contiguous()
    if initial_state is not None:
        initial_state = initial_state.float().contiguous()
    return ChunkGatedDeltaRuleFunction.apply(
        q, k, v, g, beta, scale, initial_state, output_final_state, cu_seqlens, keep_states_default(keep_states),
        use_qk_l2norm,
    )  # fmt: skip
