"""Named model presets, each derived from another rather than re-typed.

Olmo Hybrid 7B is Olmo 3 7B with two heads removed (d_model 4096 -> 3840) and the pattern
S S S A replaced by G G G A. The ladder follows the paper's sizes (d_model / heads / layers) in
four arms: transformer (Olmo 3 style), hybrid 3:1, pure GDN, and 1:1 / 7:1 hybrids.
"""

from __future__ import annotations

from megatron_hybrid.models.config import HybridModelConfig

OLMO3_7B = HybridModelConfig(
    name="olmo3_7b",
    d_model=4096,
    n_layers=32,
    n_heads=32,
    ffn_hidden=11008,
    layer_pattern="SSSA",
    sliding_window=4096,
    rope_theta=500_000.0,
)

OLMO_HYBRID_7B = OLMO3_7B.replace(name="olmo_hybrid_7b", d_model=3840, n_heads=30, layer_pattern="GGGA")

# The paper's ladder: name -> (d_model, heads, layers).
LADDER_SIZES = {
    "60m": (384, 8, 8),
    "100m": (512, 8, 12),
    "190m": (768, 12, 12),
    "370m": (1024, 16, 16),
    "600m": (1280, 16, 16),
    "760m": (1536, 16, 16),
    "1b": (2048, 16, 16),
}
LADDER_ARMS = {"transformer": "SSSA", "hybrid": "GGGA", "gdn": "G", "hybrid_1to1": "GA", "hybrid_7to1": "GGGGGGGA"}


def ladder(size: str, arm: str) -> HybridModelConfig:
    """A ladder model: Olmo's shape rules at the paper's (d_model, heads, layers)."""
    d_model, heads, layers = LADDER_SIZES[size]
    pattern = LADDER_ARMS[arm]
    if layers % len(pattern):  # 7:1 on a 12-layer model: the pattern can't tile, so it is cut
        pattern = (pattern * layers)[:layers]
    return OLMO3_7B.replace(
        name=f"ladder_{size}_{arm}",
        d_model=d_model,
        n_heads=heads,
        n_layers=layers,
        ffn_hidden=_ffn_for(d_model),
        layer_pattern=pattern,
    )


def _ffn_for(d_model: int) -> int:
    """SwiGLU hidden of 8/3 d rounded up to a multiple of 256 (Olmo's rule; 11008 at d=4096)."""
    return 256 * -(-int(8 * d_model / 3) // 256)


def tiny(pattern: str = "GGGA", **changes) -> HybridModelConfig:
    """A few-KB model for CPU tests: head dims that are not powers of two, a short window."""
    base = HybridModelConfig(
        name=f"tiny_{pattern}",
        d_model=48,
        n_layers=4,
        n_heads=4,
        ffn_hidden=96,
        layer_pattern=pattern,
        vocab_size=256,
        sliding_window=7,
        max_seq_len=256,
        gdn_num_key_heads=4,
        gdn_key_head_dim=12,
        gdn_value_head_dim=24,
    )
    return base.replace(**changes)


PRESETS = {
    "olmo3_7b": lambda: OLMO3_7B,
    "olmo_hybrid_7b": lambda: OLMO_HYBRID_7B,
    "tiny_hybrid": lambda: tiny("GGGA", name="tiny_hybrid"),
    "tiny_olmo3": lambda: tiny("SSSA", name="tiny_olmo3"),
    **{f"ladder_{s}_{a}": (lambda s=s, a=a: ladder(s, a)) for s in LADDER_SIZES for a in LADDER_ARMS},
}


def get(name: str) -> HybridModelConfig:
    """A preset by name; the error lists the names that exist."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}") from None
