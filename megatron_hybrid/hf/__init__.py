"""Import from and export to ``transformers``' Olmo 3 and Olmo Hybrid checkpoints."""

from megatron_hybrid.hf.io import load_hf_state, mcore_model_from_hf, model_config_from_hf_dir, save_hf_dir
from megatron_hybrid.hf.mapping import hf_config_from_model_config, hf_to_mcore, mcore_to_hf, model_config_from_hf

__all__ = [
    "hf_config_from_model_config",
    "hf_to_mcore",
    "load_hf_state",
    "mcore_model_from_hf",
    "mcore_to_hf",
    "model_config_from_hf",
    "model_config_from_hf_dir",
    "save_hf_dir",
]
