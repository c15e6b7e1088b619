"""Build a Megatron-Core ``GPTModel`` from a :class:`HybridModelConfig`."""

from __future__ import annotations

from megatron.core.models.gpt import GPTModel

from layer_specs import hybrid_layer_specs
from megatron_hybrid.models.config import HybridModelConfig, HybridTransformerConfig


def build_model(
    cfg: HybridModelConfig,
    transformer_config: HybridTransformerConfig | None = None,
    pre_process: bool = True,
    post_process: bool = True,
    vp_stage: int | None = None,
    pg_collection=None,
    backend: str = "local",
) -> GPTModel:
    """This pipeline stage's part of the model (the whole model when PP=1).

    ``backend="transformer_engine"`` uses Transformer Engine's linears (see ``layer_specs``).
    """
    tcfg = transformer_config or cfg.transformer_config()
    return GPTModel(
        config=tcfg,
        transformer_layer_spec=hybrid_layer_specs(tcfg, vp_stage=vp_stage, backend=backend),
        vocab_size=cfg.vocab_size,
        max_sequence_length=cfg.max_seq_len,
        pre_process=pre_process,
        post_process=post_process,
        share_embeddings_and_output_weights=False,
        position_embedding_type="rope" if cfg.rope_theta else "none",
        rotary_base=cfg.rope_theta or 10_000,
        rotary_percent=1.0,
        pg_collection=pg_collection,
        vp_stage=vp_stage,
    )
