"""Model configs, presets and the GPTModel builder."""

from megatron_hybrid.models import presets
from megatron_hybrid.models.build import build_model
from megatron_hybrid.models.config import HybridModelConfig, HybridTransformerConfig

__all__ = ["HybridModelConfig", "HybridTransformerConfig", "build_model", "presets"]
