"""Name and layout mapping between ``transformers``' Olmo 3 / Olmo Hybrid and the Megatron model.

Both directions work on TP=1, PP=1 state dicts of the whole model: distributed checkpoints take
care of every other layout. The mapping is pure tensor bookkeeping (concatenations and splits),
so ``hf -> mcore -> hf`` is exact.
"""

from __future__ import annotations

import torch

from megatron_hybrid.models.config import HybridModelConfig

HF_LAYER_TYPES = {"linear_attention": "G", "full_attention": "A", "sliding_attention": "S"}
# Olmo Hybrid's files keep OLMo-core's names; transformers renames them when it loads
# (its conversion_mapping) and back when it saves. Applied in both directions here.
HYBRID_DISK_RENAMES = (
    ("attention_layer_norm", "input_layernorm"),
    ("feedforward_layer_norm", "post_attention_layernorm"),
)
CONV_PARTS = ("q_conv1d", "k_conv1d", "v_conv1d")


# ---- configs ------------------------------------------------------------------------------
def model_config_from_hf(hf_config) -> HybridModelConfig:
    """A ``HybridModelConfig`` equal to an ``Olmo3Config`` / ``OlmoHybridConfig``."""
    model_type = hf_config.model_type
    if model_type not in ("olmo3", "olmo_hybrid"):
        raise ValueError(f"model_type={model_type!r}: only 'olmo3' and 'olmo_hybrid' checkpoints convert")
    for name, wanted in (("hidden_act", "silu"), ("attention_bias", False), ("tie_word_embeddings", False)):
        value = getattr(hf_config, name, wanted)
        if value != wanted:
            raise ValueError(f"{name}={value!r} in the HF config is not supported (Olmo uses {wanted!r})")
    letters = []
    for i, kind in enumerate(hf_config.layer_types):
        if kind not in HF_LAYER_TYPES:
            raise ValueError(f"layer_types[{i}]={kind!r} is not one of {sorted(HF_LAYER_TYPES)}")
        letters.append(HF_LAYER_TYPES[kind])
    rope = getattr(hf_config, "rope_parameters", None) or {}
    if "full_attention" in rope:  # Olmo 3 keeps one entry per layer type
        rope = rope["full_attention"]
    for key, params in (getattr(hf_config, "rope_parameters", None) or {}).items():
        if isinstance(params, dict) and params.get("rope_type", "default") != "default":
            raise ValueError(
                f"rope_parameters[{key!r}] uses rope_type={params['rope_type']!r}; only 'default' converts"
            )
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"rope_type={rope.get('rope_type')!r}: only the default RoPE converts")
    pattern = "".join(letters)
    cfg = HybridModelConfig(
        name=f"hf_{model_type}",
        d_model=hf_config.hidden_size,
        n_layers=hf_config.num_hidden_layers,
        n_heads=hf_config.num_attention_heads,
        n_kv_heads=hf_config.num_key_value_heads,
        ffn_hidden=hf_config.intermediate_size,
        layer_pattern=pattern,
        vocab_size=hf_config.vocab_size,
        sliding_window=getattr(hf_config, "sliding_window", None) or 4096,
        rope_theta=rope.get("rope_theta"),
        norm_eps=hf_config.rms_norm_eps,
        max_seq_len=hf_config.max_position_embeddings,
        init_std=getattr(hf_config, "initializer_range", 0.02),
    )
    if model_type == "olmo_hybrid":
        cfg = cfg.replace(
            gdn_num_key_heads=hf_config.linear_num_key_heads,
            gdn_num_value_heads=hf_config.linear_num_value_heads,
            gdn_key_head_dim=hf_config.linear_key_head_dim,
            gdn_value_head_dim=hf_config.linear_value_head_dim,
            gdn_conv_kernel=hf_config.linear_conv_kernel_dim,
            gdn_allow_neg_eigval=hf_config.linear_allow_neg_eigval,
            gdn_a_log_range=(hf_config.linear_a_log_min, hf_config.linear_a_log_max),
            gdn_dt_range=(hf_config.linear_dt_min, hf_config.linear_dt_max),
            gdn_dt_init_floor=hf_config.linear_dt_init_floor,
        )
    cfg.validate()
    return cfg


def hf_config_from_model_config(cfg: HybridModelConfig):
    """The ``transformers`` config of ``cfg``: Olmo 3 without GDN layers, Olmo Hybrid with."""
    from transformers import Olmo3Config, OlmoHybridConfig

    names = {v: k for k, v in HF_LAYER_TYPES.items()}
    layer_types = [names[c] for c in cfg.layer_types()]
    common = dict(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.ffn_hidden,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=cfg.max_seq_len,
        rms_norm_eps=cfg.norm_eps,
        initializer_range=cfg.init_std,
        layer_types=layer_types,
        tie_word_embeddings=False,
        pad_token_id=100277 if cfg.vocab_size > 100277 else None,
        eos_token_id=100257 if cfg.vocab_size > 100257 else None,
        bos_token_id=None,
    )
    if cfg.attn_head_dim != cfg.d_model // cfg.n_heads:
        raise ValueError(f"head_dim={cfg.attn_head_dim} != d_model/n_heads: transformers' Olmo models derive it")
    if "G" not in cfg.layer_pattern:
        rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
        return Olmo3Config(
            sliding_window=cfg.sliding_window,
            rope_parameters={"full_attention": dict(rope), "sliding_attention": dict(rope)},
            **common,
        )
    if "S" in cfg.layer_pattern:
        raise ValueError("transformers' OlmoHybrid has no sliding-window layers: use G and A only to export")
    rope = {"rope_type": "default", "rope_theta": cfg.rope_theta} if cfg.rope_theta else None
    return OlmoHybridConfig(
        rope_parameters=rope,
        linear_num_key_heads=cfg.gdn_key_heads,
        linear_num_value_heads=cfg.gdn_value_heads,
        linear_key_head_dim=cfg.gdn_k_dim,
        linear_value_head_dim=cfg.gdn_v_dim,
        linear_conv_kernel_dim=cfg.gdn_conv_kernel,
        linear_allow_neg_eigval=cfg.gdn_allow_neg_eigval,
        linear_a_log_min=cfg.gdn_a_log_range[0],
        linear_a_log_max=cfg.gdn_a_log_range[1],
        linear_dt_min=cfg.gdn_dt_range[0],
        linear_dt_max=cfg.gdn_dt_range[1],
        linear_dt_init_floor=cfg.gdn_dt_init_floor,
        **common,
    )


# ---- tensors ------------------------------------------------------------------------------
def _qkv_interleave(q, k, v, groups: int) -> torch.Tensor:
    """[q; k; v] -> per query group [q_g; k_g; v_g] (Megatron's linear_qkv layout)."""
    d = q.shape[1]
    q = q.view(groups, -1, d)
    k = k.view(groups, -1, d)
    v = v.view(groups, -1, d)
    return torch.cat([q, k, v], dim=1).reshape(-1, d)


def _qkv_split(qkv, groups: int, q_rows: int):
    d = qkv.shape[1]
    per_group = qkv.view(groups, -1, d)
    kv_rows = (per_group.shape[1] - q_rows // groups) // 2
    q, k, v = per_group.split([q_rows // groups, kv_rows, kv_rows], dim=1)
    return q.reshape(-1, d), k.reshape(-1, d), v.reshape(-1, d)


def from_hf_disk_format(state: dict[str, torch.Tensor], model_type: str) -> dict[str, torch.Tensor]:
    """File names -> ``transformers``' module names (what ``from_pretrained`` does on load)."""
    if model_type != "olmo_hybrid":
        return dict(state)
    out = {}
    for key, tensor in state.items():
        for old, new in HYBRID_DISK_RENAMES:
            key = key.replace(f".{old}.", f".{new}.")
        out[key] = tensor
    for key in [k for k in out if k.endswith("linear_attn.q_conv1d.weight")]:
        prefix = key.removesuffix("q_conv1d.weight")
        parts = [out.pop(prefix + f"{name}.weight", None) for name in CONV_PARTS]
        if all(p is not None for p in parts):  # concatenated in order; the split sizes do not matter
            out[prefix + "conv1d.weight"] = torch.cat(parts)
    return out


def to_hf_disk_format(state: dict[str, torch.Tensor], cfg: HybridModelConfig) -> dict[str, torch.Tensor]:
    """``transformers``' module names -> the file names of the released checkpoints."""
    if "G" not in cfg.layer_pattern:
        return dict(state)
    key_dim = cfg.gdn_key_heads * cfg.gdn_k_dim
    out = {}
    for key, tensor in state.items():
        if key.endswith("linear_attn.conv1d.weight"):
            prefix = key.removesuffix("conv1d.weight")
            for name, part in zip(CONV_PARTS, tensor.split([key_dim, key_dim, tensor.shape[0] - 2 * key_dim])):
                out[prefix + f"{name}.weight"] = part.contiguous()
            continue
        for old, new in HYBRID_DISK_RENAMES:
            key = key.replace(f".{new}.", f".{old}.")
        out[key] = tensor
    return out


def expected_hf_keys(cfg: HybridModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor an HF checkpoint of ``cfg`` holds, with its shape."""
    d, f = cfg.d_model, cfg.ffn_hidden
    keys = {
        "model.embed_tokens.weight": (cfg.vocab_size, d),
        "model.norm.weight": (d,),
        "lm_head.weight": (cfg.vocab_size, d),
    }
    q_width, kv_width = cfg.n_heads * cfg.attn_head_dim, cfg.kv_heads * cfg.attn_head_dim
    hk, hv, kd, vd = cfg.gdn_key_heads, cfg.gdn_value_heads, cfg.gdn_k_dim, cfg.gdn_v_dim
    for i, kind in enumerate(cfg.layer_types()):
        p = f"model.layers.{i}."
        keys.update(
            {p + "mlp.gate_proj.weight": (f, d), p + "mlp.up_proj.weight": (f, d), p + "mlp.down_proj.weight": (d, f)}
        )
        if kind == "G":
            a = p + "linear_attn."
            keys.update(
                {
                    a + "q_proj.weight": (hk * kd, d),
                    a + "k_proj.weight": (hk * kd, d),
                    a + "v_proj.weight": (hv * vd, d),
                    a + "g_proj.weight": (hv * vd, d),
                    a + "a_proj.weight": (hv, d),
                    a + "b_proj.weight": (hv, d),
                    a + "o_proj.weight": (d, hv * vd),
                    a + "conv1d.weight": (2 * hk * kd + hv * vd, 1, cfg.gdn_conv_kernel),
                    a + "A_log": (hv,),
                    a + "dt_bias": (hv,),
                    a + "o_norm.weight": (vd,),
                    p + "input_layernorm.weight": (d,),
                    p + "post_attention_layernorm.weight": (d,),
                }
            )
        else:
            a = p + "self_attn."
            keys.update(
                {
                    a + "q_proj.weight": (q_width, d),
                    a + "k_proj.weight": (kv_width, d),
                    a + "v_proj.weight": (kv_width, d),
                    a + "o_proj.weight": (d, q_width),
                    a + "q_norm.weight": (q_width,),
                    a + "k_norm.weight": (kv_width,),
                    p + "post_attention_layernorm.weight": (d,),
                    p + "post_feedforward_layernorm.weight": (d,),
                }
            )
    return keys


def check_hf_state(hf_state: dict[str, torch.Tensor], cfg: HybridModelConfig) -> None:
    """ValueError listing every missing, unexpected and mis-shaped tensor."""
    expected = expected_hf_keys(cfg)
    missing = sorted(set(expected) - set(hf_state))
    extra = sorted(k for k in set(hf_state) - set(expected) if not k.endswith("rotary_emb.inv_freq"))
    shapes = sorted(
        f"{k}: {tuple(hf_state[k].shape)} (expected {expected[k]})"
        for k in set(expected) & set(hf_state)
        if tuple(hf_state[k].shape) != expected[k]
    )
    if missing or extra or shapes:
        lines = []
        for title, items in (("missing", missing), ("unexpected", extra), ("mis-shaped", shapes)):
            if items:
                lines.append(f"{title} ({len(items)}): " + ", ".join(items[:20]) + (" ..." if len(items) > 20 else ""))
        raise ValueError("the HF checkpoint does not match its config:\n  " + "\n  ".join(lines))


# One-to-one tensors: (HF name, Megatron name). Model-level names are absolute; per-layer names are
# relative to ``model.layers.<i>.`` / ``decoder.layers.<i>.``. Fused tensors are handled in code.
MODEL_RENAMES = (
    ("model.embed_tokens.weight", "embedding.word_embeddings.weight"),
    ("model.norm.weight", "decoder.final_layernorm.weight"),
    ("lm_head.weight", "output_layer.weight"),
)
LAYER_RENAMES = {
    "G": (
        ("linear_attn.conv1d.weight", "self_attention.conv1d.weight"),
        ("linear_attn.A_log", "self_attention.A_log"),
        ("linear_attn.dt_bias", "self_attention.dt_bias"),
        ("linear_attn.o_norm.weight", "self_attention.out_norm.weight"),
        ("linear_attn.o_proj.weight", "self_attention.out_proj.weight"),
        ("input_layernorm.weight", "input_layernorm.weight"),
        ("post_attention_layernorm.weight", "pre_mlp_layernorm.weight"),
        ("mlp.down_proj.weight", "mlp.linear_fc2.weight"),
    ),
    "A": (
        ("self_attn.q_norm.weight", "self_attention.q_norm.weight"),
        ("self_attn.k_norm.weight", "self_attention.k_norm.weight"),
        ("self_attn.o_proj.weight", "self_attention.linear_proj.weight"),
        ("post_attention_layernorm.weight", "self_attention.post_norm.weight"),
        ("post_feedforward_layernorm.weight", "mlp.post_norm.weight"),
        ("mlp.down_proj.weight", "mlp.linear_fc2.weight"),
    ),
}
LAYER_RENAMES["S"] = LAYER_RENAMES["A"]
GDN_IN_PROJ = ("q", "k", "v", "g")  # -> self_attention.in_proj, in this order
GDN_IN_PROJ_BA = ("b", "a")  # -> self_attention.in_proj_ba


def _renames(cfg: HybridModelConfig):
    """Every one-to-one (HF name, Megatron name) pair of ``cfg``."""
    yield from MODEL_RENAMES
    for i, kind in enumerate(cfg.layer_types()):
        for hf, mcore in LAYER_RENAMES[kind]:
            yield f"model.layers.{i}.{hf}", f"decoder.layers.{i}.{mcore}"


def hf_to_mcore(hf_state: dict[str, torch.Tensor], cfg: HybridModelConfig) -> dict[str, torch.Tensor]:
    """HF tensors -> the TP=1 ``GPTModel`` state dict of ``cfg``."""
    check_hf_state(hf_state, cfg)
    out = {mcore: hf_state[hf] for hf, mcore in _renames(cfg)}
    for i, kind in enumerate(cfg.layer_types()):
        p, m = f"model.layers.{i}.", f"decoder.layers.{i}."
        out[m + "mlp.linear_fc1.weight"] = torch.cat(
            [hf_state[p + "mlp.gate_proj.weight"], hf_state[p + "mlp.up_proj.weight"]]
        )
        if kind == "G":
            a, s = p + "linear_attn.", m + "self_attention."
            out[s + "in_proj.weight"] = torch.cat([hf_state[f"{a}{n}_proj.weight"] for n in GDN_IN_PROJ])
            out[s + "in_proj_ba.weight"] = torch.cat([hf_state[f"{a}{n}_proj.weight"] for n in GDN_IN_PROJ_BA])
        else:
            a = p + "self_attn."
            q, k, v = (hf_state[f"{a}{n}_proj.weight"] for n in ("q", "k", "v"))
            out[m + "self_attention.linear_qkv.weight"] = _qkv_interleave(q, k, v, cfg.kv_heads)
    return out


def mcore_to_hf(state: dict[str, torch.Tensor], cfg: HybridModelConfig) -> dict[str, torch.Tensor]:
    """The TP=1 ``GPTModel`` state dict of ``cfg`` -> HF tensors (exact inverse of ``hf_to_mcore``)."""
    out = {hf: state[mcore] for hf, mcore in _renames(cfg)}
    hk, hv, kd, vd = cfg.gdn_key_heads, cfg.gdn_value_heads, cfg.gdn_k_dim, cfg.gdn_v_dim
    for i, kind in enumerate(cfg.layer_types()):
        p, m = f"model.layers.{i}.", f"decoder.layers.{i}."
        out[p + "mlp.gate_proj.weight"], out[p + "mlp.up_proj.weight"] = state[m + "mlp.linear_fc1.weight"].chunk(2)
        if kind == "G":
            a, s = p + "linear_attn.", m + "self_attention."
            parts = state[s + "in_proj.weight"].split([hk * kd, hk * kd, hv * vd, hv * vd])
            parts += state[s + "in_proj_ba.weight"].split([hv, hv])
            for name, tensor in zip(GDN_IN_PROJ + GDN_IN_PROJ_BA, parts):
                out[f"{a}{name}_proj.weight"] = tensor
        else:
            a = p + "self_attn."
            qkv = state[m + "self_attention.linear_qkv.weight"]
            q, k, v = _qkv_split(qkv, cfg.kv_heads, cfg.n_heads * cfg.attn_head_dim)
            out[a + "q_proj.weight"], out[a + "k_proj.weight"], out[a + "v_proj.weight"] = q, k, v
    return {k: v.contiguous() for k, v in out.items()}
