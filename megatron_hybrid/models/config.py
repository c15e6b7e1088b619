"""Typed model configuration: one dataclass describes Olmo 3, Olmo Hybrid and every ladder arm.

``HybridModelConfig`` is the user-facing description (OLMo-core style: typed, derived presets,
an analytic parameter count checked against the real module). ``transformer_config()`` turns it
into Megatron's ``TransformerConfig`` (the subclass ``HybridTransformerConfig`` carries the
fields Megatron does not have). ``validate()`` checks that a config can work at a given parallel
layout and raises a ``ValueError`` naming the field and what would work, before any allocation.

Layer pattern letters (one per layer; a shorter pattern repeats to fill ``n_layers``):
  ``G`` Gated DeltaNet mixer, pre-norm block (Olmo Hybrid);
  ``A`` full causal attention, post-norm block (Olmo 3 / Olmo Hybrid);
  ``S`` sliding-window attention (``sliding_window`` tokens incl. the query), post-norm (Olmo 3).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from megatron.core.transformer.transformer_config import TransformerConfig

LAYER_KINDS = {"G": "gated_delta_net", "A": "attention", "S": "sliding_attention"}
# The Triton kernels keep a head's K x V state tile in one program: K and V are capped there.
MAX_GDN_HEAD_DIM = 256


def truncated_normal_init(std: float):
    """Olmo's initialiser: normal(0, std) truncated at +-3 std."""

    def init_(tensor: torch.Tensor) -> torch.Tensor:
        return torch.nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-3 * std, b=3 * std)

    return init_


@dataclass(kw_only=True)
class HybridTransformerConfig(TransformerConfig):
    """Megatron ``TransformerConfig`` plus the fields of the hybrid blocks.

    The GDN fields reuse the names of Megatron-Core 0.19's own ``GatedDeltaNet``
    (``linear_num_key_heads``, ``linear_key_head_dim``, ...), so configs feel familiar.
    """

    hybrid_layer_pattern: str = ""
    """Expanded pattern, one letter per layer (see module docstring)."""
    sliding_window: int | None = None
    """Tokens a sliding-window query sees, itself included (transformers' ``sliding_window``)."""
    qk_norm_full_width: bool = True
    """RMSNorm q and k over all heads (Olmo), reduced across TP, rather than per head."""
    linear_allow_neg_eigval: bool = True
    """beta = 2 * sigmoid(b) (eigenvalues of the transition in (-1, 1)) instead of sigmoid(b)."""
    linear_norm_eps: float = 1e-5
    linear_a_log_range: tuple[float, float] = (0.0, 16.0)
    """A ~ U(lo, hi) at init, A_log = log A."""
    linear_dt_range: tuple[float, float] = (1e-3, 0.1)
    linear_dt_init_floor: float = 1e-4


@dataclass
class HybridModelConfig:
    """A decoder-only LM made of GDN and attention blocks, in Olmo's conventions."""

    name: str
    d_model: int
    n_layers: int
    n_heads: int
    ffn_hidden: int
    layer_pattern: str
    vocab_size: int = 100_352
    n_kv_heads: int | None = None
    head_dim: int | None = None
    sliding_window: int = 4096
    rope_theta: float | None = 500_000.0
    """None: no positional encoding at all (NoPE), as in the released Olmo Hybrid checkpoint."""
    norm_eps: float = 1e-6
    max_seq_len: int = 8192
    init_std: float = 0.02
    # Gated DeltaNet (None: derived as in transformers' OlmoHybridConfig).
    gdn_num_key_heads: int | None = None
    gdn_num_value_heads: int | None = None
    gdn_key_head_dim: int | None = None
    gdn_value_head_dim: int | None = None
    gdn_conv_kernel: int = 4
    gdn_allow_neg_eigval: bool = True
    gdn_norm_eps: float = 1e-5
    gdn_a_log_range: tuple[float, float] = (0.0, 16.0)
    gdn_dt_range: tuple[float, float] = (1e-3, 0.1)
    gdn_dt_init_floor: float = 1e-4

    # ---- derived -------------------------------------------------------------------------
    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def attn_head_dim(self) -> int:
        return self.head_dim or self.d_model // self.n_heads

    @property
    def gdn_key_heads(self) -> int:
        return self.gdn_num_key_heads or self.n_heads

    @property
    def gdn_value_heads(self) -> int:
        return self.gdn_num_value_heads or self.gdn_key_heads

    @property
    def gdn_k_dim(self) -> int:
        return self.gdn_key_head_dim or int(0.75 * self.d_model / self.gdn_key_heads)

    @property
    def gdn_v_dim(self) -> int:
        return self.gdn_value_head_dim or 2 * self.gdn_k_dim

    def layer_types(self) -> str:
        """The pattern expanded to one letter per layer."""
        reps = self.n_layers // max(len(self.layer_pattern), 1)
        return self.layer_pattern * reps

    def replace(self, **changes) -> HybridModelConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain JSON values (tuples as lists): what checkpoints store to recognise their model."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> HybridModelConfig:
        """Inverse of ``to_dict``; unknown fields are an error (a checkpoint from a newer version)."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"model config has unknown fields {unknown}: written by a newer version?")
        return cls(**(values | {k: tuple(v) for k, v in values.items() if isinstance(v, list)}))

    # ---- checks --------------------------------------------------------------------------
    def validate(
        self,
        tensor_model_parallel_size: int = 1,
        pipeline_model_parallel_size: int = 1,
        virtual_pipeline_model_parallel_size: int | None = None,
    ) -> None:
        """Raise ``ValueError`` naming the field when this config cannot work at this layout."""
        tp, pp, vp = tensor_model_parallel_size, pipeline_model_parallel_size, virtual_pipeline_model_parallel_size
        pattern = self.layer_pattern
        bad = sorted(set(pattern) - set(LAYER_KINDS))
        if not pattern or bad:
            raise ValueError(
                f"layer_pattern={pattern!r}: use the letters G (Gated DeltaNet), A (full attention), "
                f"S (sliding-window attention){'; unknown: ' + ''.join(bad) if bad else ''}"
            )
        if self.n_layers % len(pattern):
            divisors = [n for n in range(1, self.n_layers + 1) if self.n_layers % n == 0]
            raise ValueError(
                f"layer_pattern={pattern!r} (length {len(pattern)}) does not tile n_layers={self.n_layers}; "
                f"use a pattern whose length divides {self.n_layers} ({divisors}) or give all {self.n_layers} letters"
            )
        for name, value in (("d_model", self.d_model), ("n_layers", self.n_layers), ("n_heads", self.n_heads)):
            if value <= 0:
                raise ValueError(f"{name}={value} must be positive")
        uses_attention = any(c in "AS" for c in pattern)
        uses_gdn = "G" in pattern
        if uses_attention:
            if self.head_dim is None and self.d_model % self.n_heads:
                raise ValueError(
                    f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; set head_dim explicitly"
                )
            if self.n_heads % self.kv_heads:
                raise ValueError(f"n_heads={self.n_heads} must be a multiple of n_kv_heads={self.kv_heads}")
            if self.n_heads % tp or self.kv_heads % tp:
                raise ValueError(
                    f"n_heads={self.n_heads} / n_kv_heads={self.kv_heads} are not divisible by "
                    f"tensor_model_parallel_size={tp}; use a TP size in {_common_divisors(self.n_heads, self.kv_heads)}"
                )
            if self.attn_head_dim % 2 and self.rope_theta is not None:
                raise ValueError(f"head_dim={self.attn_head_dim} must be even for rotary embeddings")
        if "S" in pattern and self.sliding_window < 1:
            raise ValueError(f"sliding_window={self.sliding_window} must be >= 1 for 'S' layers")
        if uses_gdn:
            hk, hv = self.gdn_key_heads, self.gdn_value_heads
            if hv % hk:
                raise ValueError(f"gdn_num_value_heads={hv} must be a multiple of gdn_num_key_heads={hk}")
            if hk % tp or hv % tp:
                raise ValueError(
                    f"gdn_num_key_heads={hk} / gdn_num_value_heads={hv} are not divisible by "
                    f"tensor_model_parallel_size={tp}; use a TP size in {_common_divisors(hk, hv)}"
                )
            for name, dim in (("gdn_key_head_dim", self.gdn_k_dim), ("gdn_value_head_dim", self.gdn_v_dim)):
                if not 1 <= dim <= MAX_GDN_HEAD_DIM:
                    raise ValueError(
                        f"{name}={dim} is outside what the GDN kernels take (1..{MAX_GDN_HEAD_DIM}); "
                        f"use more heads or a smaller head dim"
                    )
            if self.gdn_conv_kernel < 1:
                raise ValueError(f"gdn_conv_kernel={self.gdn_conv_kernel} must be >= 1")
        if self.ffn_hidden % tp:
            raise ValueError(f"ffn_hidden={self.ffn_hidden} is not divisible by tensor_model_parallel_size={tp}")
        if self.vocab_size % tp:
            raise ValueError(
                f"vocab_size={self.vocab_size} is not divisible by tensor_model_parallel_size={tp}; "
                f"pad it to a multiple of {128 * tp}"
            )
        stages = pp * (vp or 1)
        if vp is not None and pp < 2:
            raise ValueError("virtual_pipeline_model_parallel_size needs pipeline_model_parallel_size >= 2")
        if self.n_layers % stages:
            raise ValueError(
                f"n_layers={self.n_layers} does not split evenly into pipeline_model_parallel_size={pp}"
                + (f" x virtual_pipeline_model_parallel_size={vp}" if vp else "")
                + f" = {stages} stages; use a stage count in {_divisors(self.n_layers)}"
            )

    # ---- Megatron ------------------------------------------------------------------------
    def transformer_config(self, **overrides) -> HybridTransformerConfig:
        """The Megatron config of this model; ``overrides`` set parallelism, precision, recompute."""
        self.validate(
            overrides.get("tensor_model_parallel_size", 1),
            overrides.get("pipeline_model_parallel_size", 1),
            overrides.get("virtual_pipeline_model_parallel_size"),
        )
        init = truncated_normal_init(self.init_std)
        fields = dict(
            num_layers=self.n_layers,
            hidden_size=self.d_model,
            num_attention_heads=self.n_heads,
            num_query_groups=self.kv_heads,
            kv_channels=self.attn_head_dim,
            ffn_hidden_size=self.ffn_hidden,
            gated_linear_unit=True,
            activation_func=F.silu,
            add_bias_linear=False,
            add_qkv_bias=False,
            normalization="RMSNorm",
            layernorm_epsilon=self.norm_eps,
            hidden_dropout=0.0,
            attention_dropout=0.0,
            init_method=init,
            output_layer_init_method=init,
            embedding_init_method=init,
            init_method_std=self.init_std,
            bias_activation_fusion=False,
            masked_softmax_fusion=False,
            bias_dropout_fusion=False,
            apply_rope_fusion=False,
            persist_layer_norm=False,
            gradient_accumulation_fusion=False,
            use_cpu_initialization=not torch.cuda.is_available(),
            # Layers differ by kind, so checkpoints key them per layer (decoder.layers.<i>.*)
            # instead of stacking them along a layer axis (Megatron spells it this way).
            hetereogenous_dist_checkpoint=True,
            hybrid_layer_pattern=self.layer_types(),
            sliding_window=self.sliding_window if "S" in self.layer_pattern else None,
            linear_num_key_heads=self.gdn_key_heads,
            linear_num_value_heads=self.gdn_value_heads,
            linear_key_head_dim=self.gdn_k_dim,
            linear_value_head_dim=self.gdn_v_dim,
            linear_conv_kernel_dim=self.gdn_conv_kernel,
            linear_allow_neg_eigval=self.gdn_allow_neg_eigval,
            linear_norm_eps=self.gdn_norm_eps,
            linear_a_log_range=tuple(self.gdn_a_log_range),
            linear_dt_range=tuple(self.gdn_dt_range),
            linear_dt_init_floor=self.gdn_dt_init_floor,
        )
        fields.update(overrides)
        return HybridTransformerConfig(**fields)

    # ---- analytic counts -----------------------------------------------------------------
    def gdn_mixer_params(self) -> int:
        d, hk, hv, k, v = self.d_model, self.gdn_key_heads, self.gdn_value_heads, self.gdn_k_dim, self.gdn_v_dim
        projections = d * (2 * hk * k + 2 * hv * v + 2 * hv) + hv * v * d
        conv = (2 * hk * k + hv * v) * self.gdn_conv_kernel
        return projections + conv + 2 * hv + v  # + A_log, dt_bias, shared out-norm weight

    def attention_mixer_params(self) -> int:
        d, h, kv, hd = self.d_model, self.n_heads, self.kv_heads, self.attn_head_dim
        return d * (h + 2 * kv) * hd + h * hd * d + (h + kv) * hd  # qkv, out, full-width q/k norms

    def num_params(self) -> int:
        """Exact parameter count (embeddings and untied LM head included)."""
        mlp = 3 * self.d_model * self.ffn_hidden
        block_norms = 2 * self.d_model
        total = 2 * self.vocab_size * self.d_model + self.d_model  # embedding, LM head, final norm
        for kind in self.layer_types():
            mixer = self.gdn_mixer_params() if kind == "G" else self.attention_mixer_params()
            total += mixer + mlp + block_norms
        return total

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs (forward + backward = 3x forward) per token at ``seq_len``.

        Matmuls: 2 FLOPs per weight per token (input embedding excluded, LM head included).
        Attention: 4 * keys_seen * heads * head_dim per layer (QK^T and AV), keys_seen averaged
        over positions (causal: (T+1)/2; window W: the mean of min(t+1, W)).
        GDN (chunked, chunk C=64) per head: 6*K*V for the state terms (q.S, k.S, k^T u) and
        C*(2K+V) for the intra-chunk products, averaged over the causal half.
        """
        chunk = 64
        fwd = 2.0 * (self.num_params() - self.vocab_size * self.d_model)
        attn_width = self.n_heads * self.attn_head_dim
        for kind in self.layer_types():
            if kind == "A":
                fwd += 4 * attn_width * (seq_len + 1) / 2
            elif kind == "S":
                w = min(self.sliding_window, seq_len)
                keys = (w * (w + 1) / 2 + (seq_len - w) * w) / seq_len
                fwd += 4 * attn_width * keys
            else:
                k, v = self.gdn_k_dim, self.gdn_v_dim
                fwd += self.gdn_value_heads * (6 * k * v + chunk * (2 * k + v))
        return 3.0 * fwd


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _common_divisors(a: int, b: int) -> list[int]:
    return _divisors(math.gcd(a, b))
