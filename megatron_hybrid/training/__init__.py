"""Pretraining on Megatron-Core: config, engine (DDP + distributed optimizer + schedule), loop.

``python -m megatron_hybrid.train --config NAME`` is the entry point; :func:`trainer.train` runs a
job from a :class:`config.TrainConfig`. One module per job: ``config`` (YAML + overrides),
``model`` (the model API), ``engine`` (Megatron's DDP, optimizer, LR schedule), ``loss`` (CE +
z-loss over vocab-parallel logits), ``stability`` (step skipping), ``checkpoint`` (atomic
dist_checkpointing saves), ``monitor`` (TensorBoard, console, MFU), ``estimate`` (dry run).
"""
