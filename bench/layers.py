"""Layer-level speed and memory on one GPU, against the alternatives, in the same run.

Forward and forward+backward median time (triton ``do_bench``) and peak extra memory at 7B
widths, sequence 8192, micro-batch 1, bf16, for:
- the project's GDN mixer and Megatron-Core 0.19's own ``GatedDeltaNet`` (fla kernels, local
  linears) on the same shapes and weights (when megatron-core's GDN and fla are importable);
- the project's attention mixers (full causal; sliding window 4096);
- whole blocks: the hybrid's GDN block (d=3840) against the Olmo 3 sliding-window block (d=4096)
  it replaces, and the full-attention blocks of both models;
plus torch-profiler breakdowns (share of time per kernel) of one GDN mixer step and one GDN block step.

    python bench/layers.py [--seq 8192] [--out bench/results]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from unittest import mock

import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402
from megatron.core.transformer.spec_utils import build_module  # noqa: E402

from layer_specs.hybrid import attention_layer_spec, gdn_layer_spec  # noqa: E402
from megatron_hybrid.compat.distributed import init_distributed  # noqa: E402
from megatron_hybrid.models import presets  # noqa: E402


def transformer_config(cfg):
    return cfg.transformer_config(
        params_dtype=torch.bfloat16, bf16=True, use_cpu_initialization=False, perform_initialization=True
    )


def build_layer(spec, tcfg, layer_number=1):
    return build_module(spec, config=tcfg, layer_number=layer_number).cuda()


def build_mixer(spec, tcfg):
    """The ``self_attention`` module of a block spec on its own."""
    layer = build_layer(spec, tcfg)
    return layer.self_attention


def mcore_gdn(tcfg, ours):
    """Megatron-Core's GatedDeltaNet with the same shapes, and our weights copied in."""
    import fla.ops.common.chunk_o as fla_chunk_o  # noqa: F401  (import error -> skipped)
    from megatron.core.process_groups_config import ProcessGroupCollection
    from megatron.core.ssm.gated_delta_net import GatedDeltaNet, GatedDeltaNetSubmodules
    from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear
    from megatron.core.transformer.torch_norm import WrappedTorchNorm

    # fla 0.6.0 refuses Triton < 3.7.1 on Hopper (a miscompiled gated backward, fla issue 640);
    # lifted here for timing only: its results are not used.
    for name in dir(fla_chunk_o):
        if name.startswith("TRITON_ABOVE"):
            setattr(fla_chunk_o, name, True)
    module = GatedDeltaNet(
        config=tcfg,
        submodules=GatedDeltaNetSubmodules(
            in_proj=ColumnParallelLinear, out_norm=WrappedTorchNorm, out_proj=RowParallelLinear
        ),
        layer_number=1,
        pg_collection=ProcessGroupCollection.use_mpu_process_groups(),
    ).cuda()
    with torch.no_grad():
        theirs = dict(module.named_parameters())
        mine = dict(ours.named_parameters())
        # Their one in_proj holds our two, [q k v z] then [b a], in the same order.
        mine["in_proj.weight"] = torch.cat([mine.pop("in_proj.weight"), mine.pop("in_proj_ba.weight")])
        for name, p in mine.items():
            if name in theirs and theirs[name].shape == p.shape:
                theirs[name].copy_(p)
    return module


def rotary_angles(cfg, seq: int) -> torch.Tensor | None:
    """Megatron's RoPE angles [s, 1, 1, d] for the model's attention layers, as GPTModel passes them (None: NoPE)."""
    if cfg.rope_theta is None:
        return None
    from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding

    rotary = RotaryEmbedding(kv_channels=cfg.attn_head_dim, rotary_percent=1.0, rotary_base=cfg.rope_theta)
    return rotary(seq).cuda()


def measure(name, module, x, rows, rotary_pos_emb=None, **extra):
    """``rotary_pos_emb``: the angles an attention layer (or a block around one) applies, as in the model."""
    x = x.detach().requires_grad_(True)
    params = [p for p in module.parameters() if p.requires_grad]
    takes_mask = "attention_mask" in module.forward.__code__.co_varnames
    kwargs = {"attention_mask": None, "rotary_pos_emb": rotary_pos_emb} if takes_mask else {}

    def forward():
        out = module(x, **kwargs)
        return out[0] if isinstance(out, tuple) else out

    grad = torch.randn_like(forward())

    def fwd_bwd():
        forward().backward(grad)

    fwd_bwd()  # allocate .grad once, so the peak below is activations + workspace
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fwd_bwd()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    fwd_ms = triton.testing.do_bench(forward, warmup=25, rep=100, return_mode="median")
    fb_ms = triton.testing.do_bench(fwd_bwd, warmup=25, rep=100, grad_to_none=[x, *params], return_mode="median")
    row = {"module": name, "fwd_ms": fwd_ms, "fwd_bwd_ms": fb_ms, "peak_extra_MiB": peak, **extra}
    rows.append(row)
    print(f"{name:58s} fwd {fwd_ms:7.3f} ms  fwd+bwd {fb_ms:7.3f} ms  peak extra {peak:8.1f} MiB", flush=True)
    return row


def profile_step(layer, x, out_dir: Path, name: str, title: str) -> str:
    """Torch-profiler share of time per kernel of one fwd+bwd step, written to ``out_dir/name.md``."""
    from torch.profiler import ProfilerActivity, profile

    x = x.detach().requires_grad_(True)
    grad = torch.randn_like(x)
    params = [p for p in layer.parameters() if p.requires_grad]

    def step():
        for t in (x, *params):  # as in measure(): fresh gradients, so no accumulation kernels in the profile
            t.grad = None
        layer(x, attention_mask=None)[0].backward(grad)

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            step()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_time_total > 0]
    total = sum(e.device_time_total for e in events)
    events.sort(key=lambda e: e.device_time_total, reverse=True)
    lines = ["| kernel | share | time per step (ms) | calls per step |", "|---|---|---|---|"]
    for e in events[:25]:
        lines.append(
            f"| `{e.key[:90]}` | {100 * e.device_time_total / total:.1f}% "
            f"| {e.device_time_total / 5 / 1000:.3f} | {e.count // 5} |"
        )
    table = "\n".join(lines)
    (out_dir / f"{name}.md").write_text(f"# {title}\n\n{table}\n")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seq", type=int, default=8192, help="sequence length")
    parser.add_argument("--batch", type=int, default=1, help="micro-batch size")
    parser.add_argument("--out", default=str(report.RESULTS), help="results directory")
    parser.add_argument("--skip-mcore", action="store_true", help="do not time Megatron-Core's GDN")
    args = parser.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCH_NCCL_AVOID_RECORD_STREAMS", "1")
    init_distributed()
    report.warm_up_gpu()  # the first row timed on a cold card ran slow before
    torch.manual_seed(0)

    hybrid, olmo3 = presets.get("olmo_hybrid_7b"), presets.get("olmo3_7b")
    hybrid_tcfg, olmo3_tcfg = transformer_config(hybrid), transformer_config(olmo3)
    shape = dict(seq=args.seq, batch=args.batch)
    x_hybrid = torch.randn(args.seq, args.batch, hybrid.d_model, device="cuda", dtype=torch.bfloat16)
    x_olmo3 = torch.randn(args.seq, args.batch, olmo3.d_model, device="cuda", dtype=torch.bfloat16)
    rows: list[dict] = []

    ours = build_mixer(gdn_layer_spec(), hybrid_tcfg)
    measure("GDN mixer, megatron_hybrid (d=3840, 30x(96,192))", ours, x_hybrid, rows, **shape)
    with mock.patch.dict(os.environ, MEGATRON_HYBRID_GDN_FUSED_OUT_PROJ="0"):  # out-projection a separate module
        measure("GDN mixer, megatron_hybrid, separate out-projection (y kept)", ours, x_hybrid, rows, **shape)
    with mock.patch.dict(os.environ, MEGATRON_HYBRID_GDN_FUSED_MIXER="0"):  # the mixer's ops composed by autograd
        measure("GDN mixer, megatron_hybrid, ops composed (q, k, v kept)", ours, x_hybrid, rows, **shape)
    step = f"fwd+bwd, B={args.batch} T={args.seq} d={hybrid.d_model}, bf16"
    print(profile_step(ours, x_hybrid, out_dir, "gdn_mixer_profile", f"One Olmo Hybrid GDN mixer step ({step})"))
    if not args.skip_mcore:
        try:
            theirs = mcore_gdn(hybrid_tcfg, ours)
            measure("GDN mixer, Megatron-Core 0.19 GatedDeltaNet + fla", theirs, x_hybrid, rows, **shape)
            del theirs
        except ImportError as err:
            print(f"Megatron-Core GDN skipped: {err}")
    del ours
    rope_hybrid, rope_olmo3 = rotary_angles(hybrid, args.seq), rotary_angles(olmo3, args.seq)
    for label, tcfg, x, window, angles in (
        ("attention mixer, full causal (d=3840, 30 heads)", hybrid_tcfg, x_hybrid, None, rope_hybrid),
        ("attention mixer, full causal (d=4096, 32 heads)", olmo3_tcfg, x_olmo3, None, rope_olmo3),
        ("attention mixer, window 4096 (d=4096, 32 heads)", olmo3_tcfg, x_olmo3, 4096, rope_olmo3),
    ):
        mixer = build_mixer(attention_layer_spec(window), tcfg)
        measure(label, mixer, x, rows, rotary_pos_emb=angles, **shape)
        if window:  # the RoPE kernel's share, same run: RoPE as the torch ops
            with mock.patch.dict(os.environ, MEGATRON_HYBRID_FUSED_ROPE="0"):
                measure(label + ", RoPE as torch ops", mixer, x, rows, rotary_pos_emb=angles, **shape)
        del mixer

    gdn_block = build_layer(gdn_layer_spec(), hybrid_tcfg)
    measure("block: Olmo Hybrid GDN (pre-norm, + MLP 11008)", gdn_block, x_hybrid, rows, **shape)
    for label, spec, tcfg, x, angles in (
        ("block: Olmo 3 sliding-window attention (+ MLP)", attention_layer_spec(4096), olmo3_tcfg, x_olmo3, rope_olmo3),
        ("block: Olmo Hybrid full attention (+ MLP)", attention_layer_spec(None), hybrid_tcfg, x_hybrid, rope_hybrid),
        ("block: Olmo 3 full attention (+ MLP)", attention_layer_spec(None), olmo3_tcfg, x_olmo3, rope_olmo3),
    ):
        block = build_layer(spec, tcfg)
        measure(label, block, x, rows, rotary_pos_emb=angles, **shape)
        del block

    print(profile_step(gdn_block, x_hybrid, out_dir, "gdn_block_profile", f"One Olmo Hybrid GDN block step ({step})"))
    columns = ["module", "seq", "batch", "fwd_ms", "fwd_bwd_ms", "peak_extra_MiB"]
    notes = (
        "Peak extra memory: activations and workspace of one fwd+bwd, beyond weights, grads and input. Attention "
        "mixers and blocks apply RoPE with the model's angles, as GPTModel passes them (since session 7; before, "
        "the attention rows ran without RoPE)."
    )
    print(report.write("layers", rows, columns, notes, out_dir).read_text())


if __name__ == "__main__":
    main()
