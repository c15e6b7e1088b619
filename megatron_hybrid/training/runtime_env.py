"""The process environment a training run needs, set by the trainer itself before CUDA or NCCL start.

Every way of starting the trainer (``launch/torchrun.sh``, the SLURM script, ``bench/model_step.py``, a plain
``torchrun`` of a user's own) gets the same settings, so a benchmark measures what ``make pretrain-7b`` runs. A value
already in the environment wins.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import MutableMapping

import torch

RUNTIME_ENV = {
    # Megatron's sequence-parallel backward issues the all-gather / reduce-scatter before the GEMM it overlaps with;
    # with one hardware queue the GPU starts them in that order (with several, the GEMM can take every SM first).
    "CUDA_DEVICE_MAX_CONNECTIONS": "1",
    # A rank whose collective fails or times out raises instead of hanging the job.
    "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",
    # Async collectives (the SP backward, the DP grad buckets) free their inputs when waited on, not when the
    # caching allocator's record_stream bookkeeping catches up: lower peak memory.
    "TORCH_NCCL_AVOID_RECORD_STREAMS": "1",
}


def apply_runtime_env(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set each of ``RUNTIME_ENV`` that ``env`` (default ``os.environ``) lacks; return the values in effect."""
    env = os.environ if env is None else env
    missing = {key: value for key, value in RUNTIME_ENV.items() if key not in env}
    if missing and env is os.environ and torch.cuda.is_initialized():
        # CUDA read CUDA_DEVICE_MAX_CONNECTIONS when its context was created: too late to change it now.
        warnings.warn(f"CUDA started before the trainer set {sorted(missing)}: set them in the launcher", stacklevel=2)
    env.update(missing)
    return {key: env[key] for key in RUNTIME_ENV}
