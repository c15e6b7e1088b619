"""Layer specs for Megatron-Core's GPTModel: Olmo 3, Olmo Hybrid, or any GDN/attention pattern.

from layer_specs import olmo_hybrid_layer_specs
block_spec = olmo_hybrid_layer_specs(config)          # this pipeline stage's layers
model = GPTModel(config, transformer_layer_spec=block_spec, ...)
"""

from layer_specs.hybrid import (
    attention_layer_spec,
    gdn_layer_spec,
    hybrid_layer_specs,
    olmo3_layer_specs,
    olmo_hybrid_layer_specs,
)

__all__ = [
    "attention_layer_spec",
    "gdn_layer_spec",
    "hybrid_layer_specs",
    "olmo3_layer_specs",
    "olmo_hybrid_layer_specs",
]
