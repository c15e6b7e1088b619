"""Training data: Megatron indexed datasets, OLMo-style token memmaps, loaders, and ``prepare``.

``build_datasets`` (``datasets.py``) returns the train/valid datasets for a run, ``loader.py``
turns one into this rank's micro-batches in a seed-fixed, resumable order (``dali.py`` offers the
same order through NVIDIA DALI), ``checks.py`` fails bad input before training, and
``python -m megatron_hybrid.data.prepare`` tokenizes raw text into an indexed dataset.
"""
