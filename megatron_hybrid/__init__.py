"""megatron-hybrid: Olmo Hybrid (Gated DeltaNet + attention) and Olmo 3 on Megatron-Core."""
