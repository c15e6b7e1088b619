"""The GDN mixer rows of bench/layers.py (time and peak extra memory, T=8192, d=3840) for the package first on
sys.path (the current directory), plus Megatron-Core's GatedDeltaNet with --mcore."""

import os
import sys

sys.path.insert(0, os.path.join(os.getcwd(), "bench"))
sys.path.insert(0, os.getcwd())
import torch  # noqa: E402
from layers import build_mixer, mcore_gdn, measure, transformer_config  # noqa: E402

import megatron_hybrid  # noqa: E402
from layer_specs.hybrid import gdn_layer_spec  # noqa: E402
from megatron_hybrid.compat.distributed import init_distributed  # noqa: E402
from megatron_hybrid.models import presets  # noqa: E402

print("package", megatron_hybrid.__file__)
os.environ.setdefault("TORCH_NCCL_AVOID_RECORD_STREAMS", "1")
init_distributed()
torch.manual_seed(0)
hybrid = presets.get("olmo_hybrid_7b")
tcfg = transformer_config(hybrid)
x = torch.randn(8192, 1, hybrid.d_model, device="cuda", dtype=torch.bfloat16)
rows = []
ours = build_mixer(gdn_layer_spec(), tcfg)
measure("GDN mixer, megatron_hybrid", ours, x, rows)
if "--mcore" in sys.argv:
    measure("GDN mixer, Megatron-Core 0.19 GatedDeltaNet + fla", mcore_gdn(tcfg, ours), x, rows)
