"""Megatron ``ModuleSpec``s for any pattern of GDN and attention blocks (wiring only).

``hybrid_layer_specs(config)`` returns the ``TransformerBlockSubmodules`` of the layers that
this pipeline stage builds: pass it to ``GPTModel(transformer_layer_spec=...)``. A pattern may
straddle stages; each stage gets its own slice of the expanded pattern.

Blocks, in the notation ``x -> out``:
- ``G``: pre-norm Gated DeltaNet block, ``h = x + GDN(RMSNorm(x)); out = h + MLP(RMSNorm(h))``.
- ``A`` / ``S``: Olmo's post-norm attention block, ``h = x + RMSNorm(attn(x));
  out = h + RMSNorm(MLP(h))``, full causal or with a sliding window.
"""

from __future__ import annotations

from functools import partial

from megatron.core.fusions.fused_bias_dropout import get_bias_dropout_add
from megatron.core.tensor_parallel import ColumnParallelLinear, RowParallelLinear
from megatron.core.transformer.identity_op import IdentityOp
from megatron.core.transformer.mlp import MLPSubmodules
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_block import TransformerBlockSubmodules, get_num_layers_to_build
from megatron.core.transformer.transformer_layer import (
    TransformerLayer,
    TransformerLayerSubmodules,
    get_transformer_layer_offset,
)

from megatron_hybrid.layers.attention import OlmoAttentionSubmodules, OlmoSelfAttention
from megatron_hybrid.layers.gated_delta_net import GatedDeltaNet, GatedDeltaNetSubmodules
from megatron_hybrid.layers.mlp import PostNormMLP, PostNormMLPSubmodules, SwiGLUMLP
from megatron_hybrid.layers.norms import RMSNorm

DEFAULT_SLIDING_WINDOW = 4096
BACKENDS = ("local", "local_async_tp", "transformer_engine")


def linear_modules(backend: str = "local"):
    """(ColumnParallel, RowParallel) linear classes of a backend (Megatron's ``--transformer-impl`` names).

    ``transformer_engine`` swaps in Megatron's TE linears (same arguments, same math, FP8-capable);
    ``local_async_tp`` Megatron's local linears whose sequence-parallel collectives are pipelined with their GEMMs
    (``megatron_hybrid.layers.async_tp``; CUDA with TP > 1 and SP, else exactly ``local``).
    Everything else in the blocks is the project's own and identical for all backends.
    """
    if backend == "local":
        return ColumnParallelLinear, RowParallelLinear
    if backend == "local_async_tp":
        from megatron_hybrid.layers.async_tp import AsyncTPColumnParallelLinear, AsyncTPRowParallelLinear

        return AsyncTPColumnParallelLinear, AsyncTPRowParallelLinear
    if backend == "transformer_engine":
        try:
            import transformer_engine  # noqa: F401
            from megatron.core.extensions.transformer_engine import TEColumnParallelLinear, TERowParallelLinear
        except ImportError as err:
            raise ValueError(
                "backend='transformer_engine' needs Transformer Engine (pip install 'megatron-hybrid[te]'); "
                "use backend='local' on machines without it"
            ) from err
        return TEColumnParallelLinear, TERowParallelLinear
    raise ValueError(f"backend={backend!r}: choose one of {BACKENDS}")


def gdn_layer_spec(backend: str = "local") -> ModuleSpec:
    """Pre-norm block around the Gated DeltaNet mixer."""
    column, row = linear_modules(backend)
    return ModuleSpec(
        module=TransformerLayer,
        submodules=TransformerLayerSubmodules(
            input_layernorm=RMSNorm,
            self_attention=ModuleSpec(
                module=GatedDeltaNet,
                submodules=GatedDeltaNetSubmodules(in_proj=column, out_proj=row),
            ),
            self_attn_bda=get_bias_dropout_add,
            pre_mlp_layernorm=RMSNorm,
            mlp=partial(
                SwiGLUMLP.as_mlp_submodule,
                submodules=MLPSubmodules(linear_fc1=column, linear_fc2=row),
            ),
            mlp_bda=get_bias_dropout_add,
        ),
    )


def attention_layer_spec(sliding_window: int | None = None, backend: str = "local") -> ModuleSpec:
    """Olmo's post-norm attention block; ``sliding_window`` tokens (query included) or full causal."""
    column, row = linear_modules(backend)
    return ModuleSpec(
        module=TransformerLayer,
        submodules=TransformerLayerSubmodules(
            input_layernorm=IdentityOp,
            self_attention=ModuleSpec(
                module=OlmoSelfAttention,
                params={"sliding_window": sliding_window},
                submodules=OlmoAttentionSubmodules(linear_qkv=column, linear_proj=row, post_norm=RMSNorm),
            ),
            self_attn_bda=get_bias_dropout_add,
            pre_mlp_layernorm=IdentityOp,
            mlp=partial(
                PostNormMLP.as_mlp_submodule,
                submodules=PostNormMLPSubmodules(linear_fc1=column, linear_fc2=row, post_norm=RMSNorm),
            ),
            mlp_bda=get_bias_dropout_add,
        ),
    )


def expand_pattern(pattern: str, num_layers: int) -> str:
    """Tile ``pattern`` to ``num_layers`` letters; ValueError if it does not tile."""
    if not pattern or set(pattern) - set("GAS"):
        raise ValueError(f"hybrid_layer_pattern={pattern!r}: use letters G (GDN), A (attention), S (sliding window)")
    if num_layers % len(pattern):
        raise ValueError(
            f"hybrid_layer_pattern={pattern!r} (length {len(pattern)}) does not tile num_layers={num_layers}; "
            f"give a pattern whose length divides {num_layers}, or one letter per layer"
        )
    return pattern * (num_layers // len(pattern))


def hybrid_layer_specs(
    config,
    pattern: str | None = None,
    vp_stage: int | None = None,
    pp_rank: int | None = None,
    sliding_window: int | None = None,
    backend: str = "local",
) -> TransformerBlockSubmodules:
    """Specs of this pipeline stage's layers for ``pattern`` (default ``config.hybrid_layer_pattern``).

    ``backend``: ``"local"`` (Megatron's own linears; works everywhere), ``"local_async_tp"`` (the same, with the
    SP collectives overlapped on CUDA) or ``"transformer_engine"``.
    """
    pattern = pattern or getattr(config, "hybrid_layer_pattern", "")
    window = sliding_window or getattr(config, "sliding_window", None) or DEFAULT_SLIDING_WINDOW
    layers = expand_pattern(pattern, config.num_layers)
    by_kind = {
        "G": gdn_layer_spec(backend),
        "A": attention_layer_spec(None, backend),
        "S": attention_layer_spec(window, backend),
    }
    offset = get_transformer_layer_offset(config, vp_stage, pp_rank)
    count = get_num_layers_to_build(config, vp_stage, pp_rank)
    return TransformerBlockSubmodules(
        layer_specs=[by_kind[kind] for kind in layers[offset : offset + count]], layer_norm=RMSNorm
    )


def olmo3_layer_specs(
    config, vp_stage=None, pp_rank=None, sliding_window: int = DEFAULT_SLIDING_WINDOW, backend: str = "local"
):
    """Olmo 3: sliding-window attention, full attention on every fourth layer (S S S A)."""
    return hybrid_layer_specs(config, "SSSA", vp_stage, pp_rank, sliding_window, backend)


def olmo_hybrid_layer_specs(config, vp_stage=None, pp_rank=None, backend: str = "local"):
    """Olmo Hybrid: three Gated DeltaNet blocks, then full attention (G G G A)."""
    return hybrid_layer_specs(config, "GGGA", vp_stage, pp_rank, backend=backend)
