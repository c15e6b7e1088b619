"""On the GPU: the models in bf16 (Triton GDN kernels, FlexAttention windows) against fp32 references.

The fp32 CPU model is the reference (the CPU tests prove it equal to ``transformers``). The bf16
GPU model may differ from it by no more than twice what the same model computed in bf16 on the
CPU (PyTorch ops, banded attention) differs, plus a small floor: the kernels add no error of
their own beyond bf16 rounding.
"""

from __future__ import annotations

import math

import pytest
import torch

from megatron_hybrid.compat.distributed import init_distributed
from megatron_hybrid.layers.core_attention import banded_sliding_window, causal_attention
from megatron_hybrid.models import build_model, presets

pytestmark = pytest.mark.gpu
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("seq,window", [(300, 64), (1024, 257), (4096, 1024)])
def test_flex_sliding_window_matches_banded(dtype, seq, window):
    gen = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(2, 4, seq, 64, device="cuda", dtype=dtype, generator=gen) for _ in range(3))
    scale = 64**-0.5
    want = banded_sliding_window(q.double(), k.double(), v.double(), scale, window)
    got = causal_attention(q, k, v, scale, window)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    assert _rel(got, want) <= tol


# Head dims that fill no Triton block (12 / 24, as in `make smoke`) and ones that do (64; 48 / 96).
SMALL = dict(d_model=48, n_heads=4, ffn_hidden=96, sliding_window=7, gdn_key_head_dim=12, gdn_value_head_dim=24)
MEDIUM = dict(d_model=256, n_heads=4, ffn_hidden=512, sliding_window=64, gdn_key_head_dim=48, gdn_value_head_dim=96)


DRAWS = 4  # data draws per gradient comparison


def _model_pair(pattern, dims=MEDIUM):
    init_distributed()
    cfg = presets.tiny(pattern, n_layers=4, gdn_num_key_heads=4, max_seq_len=1024, **dims)
    torch.manual_seed(0)
    ref = build_model(cfg, cfg.transformer_config(use_cpu_initialization=True)).eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return cfg, ref


def _clone(cfg, ref, device="cpu", dtype=torch.float32):
    """The same weights in another model instance (process groups do not deep-copy)."""
    model = build_model(cfg, cfg.transformer_config(use_cpu_initialization=True, perform_initialization=False))
    model.load_state_dict(ref.state_dict())
    return model.to(device=device, dtype=dtype).eval()


@pytest.mark.parametrize("pattern", ["GGGA", "SSSA", "GSGA"])
def test_bf16_gpu_model_is_as_close_to_fp32_as_bf16_pytorch(pattern):
    cfg, ref = _model_pair(pattern)
    seq = 333  # not a multiple of the chunk size
    ids = torch.randint(0, cfg.vocab_size, (2, seq))
    pos = torch.arange(seq).expand(2, -1)
    with torch.no_grad():
        want = ref(ids, pos, None)
        cpu_bf16 = _clone(cfg, ref, dtype=torch.bfloat16)
        cpu_err = _rel(cpu_bf16(ids, pos, None), want)
        gpu_bf16 = _clone(cfg, ref, "cuda", torch.bfloat16)
        gpu_err = _rel(gpu_bf16(ids.cuda(), pos.cuda(), None).cpu(), want)
        gpu_fp32 = _clone(cfg, ref, "cuda")
        fp32_err = _rel(gpu_fp32(ids.cuda(), pos.cuda(), None).cpu(), want)
    assert fp32_err <= 5e-3, fp32_err  # tf32 dots inside the kernels at most
    assert gpu_err <= 2 * cpu_err + 1e-3, (gpu_err, cpu_err)


def _grads(model, device, ids, labels, pos) -> dict:
    # Cross entropy on the logits: Megatron's fused vocab-parallel loss all-reduces over the TP group, which NCCL
    # cannot do for the CPU models.
    model.train()
    model.zero_grad(set_to_none=True)
    logits = model(ids.to(device), pos.to(device), None).float()
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.to(device).flatten()).backward()
    return {name: p.grad.float().cpu() for name, p in model.named_parameters()}


@pytest.mark.parametrize("pattern", ["GGGA", "SSSA"])
@pytest.mark.parametrize("dims", [MEDIUM, SMALL], ids=["medium", "small"])
def test_bf16_gpu_gradients_are_as_close_to_fp32_as_bf16_pytorch(pattern, dims):
    """Per parameter, pooled over data draws: the GPU bf16 gradient error <= 2x the CPU bf16 (PyTorch ops) error +
    1e-3; 3.5x for the two per-head decay parameters (A_log, dt_bias).

    One draw is not enough: A_log and dt_bias get sums over all tokens of dg * dg/dtheta with cancellation, and
    their single-draw GPU/CPU ratio spread 0.4 .. 7 over four draws on the H100. The error is pooled (the norm of the
    four draws' differences over the norm of their gradients), not a mean of per-draw ratios: a draw whose sum nearly
    cancels has a large relative error in any precision (layer 1's A_log on draw 0: 1.75e-2 in fp32 on the GPU, 5x
    draw 3's), and a mean of ratios let that one draw decide the test (2026-11-27: 2.1e-1 on draw 0 with the first
    configs, 1.5e-1 autotuned, from a 1e-5 change in the WY solve's rounding). The CPU path runs the whole delta rule
    in fp32, while the kernels keep their per-chunk intermediates (w, u, v_new, the states) in bf16 as fla does; dg
    itself stays within the op tests' 1e-2 against fp64."""
    cfg, ref = _model_pair(pattern, dims)
    seq = 257
    cpu_ref = _clone(cfg, ref, dtype=torch.bfloat16)
    gpu_ref = _clone(cfg, ref, "cuda", torch.bfloat16)
    sq_norm, cpu_sq_err, gpu_sq_err = {}, {}, {}
    for draw in range(DRAWS):
        torch.manual_seed(100 + draw)
        ids = torch.randint(0, cfg.vocab_size, (2, seq))
        labels = torch.randint(0, cfg.vocab_size, (2, seq))
        pos = torch.arange(seq).expand(2, -1)
        want = _grads(ref, "cpu", ids, labels, pos)
        cpu_bf16, gpu_bf16 = _grads(cpu_ref, "cpu", ids, labels, pos), _grads(gpu_ref, "cuda", ids, labels, pos)
        for name, g in want.items():
            g = g.double()
            sq_norm[name] = sq_norm.get(name, 0.0) + g.square().sum().item()
            cpu_sq_err[name] = cpu_sq_err.get(name, 0.0) + (cpu_bf16[name].double() - g).square().sum().item()
            gpu_sq_err[name] = gpu_sq_err.get(name, 0.0) + (gpu_bf16[name].double() - g).square().sum().item()
    for name in sq_norm:
        cpu_err, gpu_err = (math.sqrt(e[name] / sq_norm[name]) for e in (cpu_sq_err, gpu_sq_err))
        factor = 3.5 if name.endswith(("A_log", "dt_bias")) else 2.0
        assert gpu_err <= factor * cpu_err + 1e-3, (
            f"{name}: GPU bf16 {gpu_err:.2e} vs CPU bf16 {cpu_err:.2e} (pooled over {DRAWS} draws)"
        )


def test_transformer_engine_backend_matches_local():
    """Runs only where Transformer Engine is installed (not on the project's machines)."""
    pytest.importorskip("transformer_engine")
    init_distributed()
    cfg = presets.tiny("GSGA", d_model=256, n_heads=4, ffn_hidden=512, gdn_key_head_dim=48, gdn_value_head_dim=96)
    tcfg = cfg.transformer_config(use_cpu_initialization=False)
    local = build_model(cfg, tcfg).cuda().eval()
    te = build_model(cfg, tcfg, backend="transformer_engine").cuda().eval()
    missing, unexpected = te.load_state_dict(local.state_dict(), strict=False)
    assert not unexpected and all(k.endswith("_extra_state") for k in missing)
    ids = torch.randint(0, cfg.vocab_size, (2, 129), device="cuda")
    pos = torch.arange(129, device="cuda").expand(2, -1)
    with torch.no_grad():
        assert _rel(te(ids, pos, None), local(ids, pos, None)) <= 1e-3
