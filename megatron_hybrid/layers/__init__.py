"""Megatron-Core modules of the Olmo 3 / Olmo Hybrid blocks (local, Transformer-Engine-free)."""
