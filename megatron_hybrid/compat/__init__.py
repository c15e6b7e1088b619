"""Compatibility layers that let Megatron-Core run where it assumes CUDA."""

from megatron_hybrid.compat.cpu import enable_cpu_megatron

__all__ = ["enable_cpu_megatron"]
