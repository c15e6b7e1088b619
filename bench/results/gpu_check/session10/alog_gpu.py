"""Per-parameter bf16 gradient errors vs the fp32 CPU model (GGGA medium, the failing layer GPU test's setup).
argv: label, then flags: cpu (also CPU bf16), fp32 (also GPU fp32)."""

import sys
import time

import torch

from megatron_hybrid.compat.distributed import init_distributed
from megatron_hybrid.models import build_model, presets

label, flags = sys.argv[1], set(sys.argv[2:])
DRAWS, SEQ = 4, 257
MEDIUM = dict(d_model=256, n_heads=4, ffn_hidden=512, sliding_window=64, gdn_key_head_dim=48, gdn_value_head_dim=96)
init_distributed()
cfg = presets.tiny("GGGA", n_layers=4, gdn_num_key_heads=4, max_seq_len=1024, **MEDIUM)
torch.manual_seed(0)
ref = build_model(cfg, cfg.transformer_config(use_cpu_initialization=True)).eval()
with torch.no_grad():
    for name, p in ref.named_parameters():
        if "norm" in name:
            p.add_(0.1 * torch.randn_like(p))


def clone(device, dtype):
    m = build_model(cfg, cfg.transformer_config(use_cpu_initialization=True, perform_initialization=False))
    m.load_state_dict(ref.state_dict())
    return m.to(device=device, dtype=dtype).eval()


def grads(model, device, ids, labels, pos):
    model.train()
    model.zero_grad(set_to_none=True)
    logits = model(ids.to(device), pos.to(device), None).float()
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.to(device).flatten()).backward()
    return {n: p.grad.float().cpu() for n, p in model.named_parameters()}


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


arms = {"gpu_bf16": clone("cuda", torch.bfloat16)}
if "cpu" in flags:
    arms["cpu_bf16"] = clone("cpu", torch.bfloat16)
if "fp32" in flags:
    arms["gpu_fp32"] = clone("cuda", torch.float32)
err = {a: {} for a in arms}
sqe = {a: {} for a in arms}
sqn = {}
per_draw = {a: [] for a in arms}
t0 = time.time()
for draw in range(DRAWS):
    torch.manual_seed(100 + draw)
    ids = torch.randint(0, cfg.vocab_size, (2, SEQ))
    labels = torch.randint(0, cfg.vocab_size, (2, SEQ))
    pos = torch.arange(SEQ).expand(2, -1)
    want = grads(ref, "cpu", ids, labels, pos)
    for a, m in arms.items():
        g = grads(m, "cuda" if a.startswith("gpu") else "cpu", ids, labels, pos)
        for n in want:
            err[a][n] = err[a].get(n, 0.0) + rel(g[n], want[n]) / DRAWS
            sqe[a][n] = sqe[a].get(n, 0.0) + (g[n].double() - want[n].double()).square().sum().item()
            sqn[n] = sqn.get(n, 0.0) + want[n].double().square().sum().item() / len(arms)
        per_draw[a].append(
            rel(g["decoder.layers.1.self_attention.A_log"], want["decoder.layers.1.self_attention.A_log"])
        )
keys = [n for n in err["gpu_bf16"] if ".self_attention." in n and int(n.split(".")[2]) < 3] + [
    "embedding.word_embeddings.weight"
]
print(f"== {label} ({time.time() - t0:.0f}s)")
for a in arms:
    print(f"  {a}: L1 A_log per draw " + " ".join(f"{x:.2e}" for x in per_draw[a]))
for n in keys:
    print(f"  {n:55s} " + " ".join(f"{a}={err[a][n]:.2e}/pooled {(sqe[a][n] / sqn[n]) ** 0.5:.2e}" for a in arms))
