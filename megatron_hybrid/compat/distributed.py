"""Process-group set-up shared by the trainer, the converters and the tests.

``init_distributed`` works under ``torchrun`` (reads RANK/WORLD_SIZE/...), and in a single
process with no launcher (a one-rank group over an in-process store), with NCCL on GPUs and
gloo on a CPU. It then initialises Megatron's model-parallel groups and seeds the RNG tracker.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from megatron.core import parallel_state, tensor_parallel

from megatron_hybrid.compat.cpu import enable_cpu_megatron


def init_distributed(
    tensor_model_parallel_size: int = 1,
    pipeline_model_parallel_size: int = 1,
    virtual_pipeline_model_parallel_size: int | None = None,
    seed: int = 1234,
) -> torch.device:
    """Initialise torch.distributed and Megatron's parallel state; return this rank's device."""
    enable_cpu_megatron()
    use_cuda = torch.cuda.is_available()
    if not dist.is_initialized():
        backend = "nccl" if use_cuda else "gloo"
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        if "RANK" in os.environ:  # under torchrun / srun: the launcher's rendezvous
            dist.init_process_group(backend=backend)
        else:  # one process, no launcher: an in-process store, no port to race for
            dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1)
    world = dist.get_world_size()
    model_parallel = tensor_model_parallel_size * pipeline_model_parallel_size
    if world % model_parallel:
        raise ValueError(
            f"world size {world} is not divisible by tensor_model_parallel_size x "
            f"pipeline_model_parallel_size = {model_parallel}; launch a multiple of {model_parallel} ranks"
        )
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=tensor_model_parallel_size,
        pipeline_model_parallel_size=pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=virtual_pipeline_model_parallel_size,
    )
    torch.manual_seed(seed)
    tensor_parallel.model_parallel_cuda_manual_seed(seed)
    return torch.device("cuda", torch.cuda.current_device()) if use_cuda else torch.device("cpu")


def destroy_distributed() -> None:
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()
