"""Let Megatron-Core run on a CPU with the gloo backend.

Megatron-Core 0.19 assumes CUDA in six places that matter for this project (see
``shared/reference/stack-notes.md``). On a machine with a GPU this module does nothing; on a
CPU it patches exactly those places, once, so that the tests and a CPU run (``make smoke`` on a
laptop, CI) execute the very same Megatron code paths as a cluster run:

1. the CUDA RNG tracker (``model_parallel_cuda_manual_seed``, activation-recompute RNG
   restore): CUDA RNG calls are redirected to the CPU generator;
2. ``torch.cuda.current_device()`` (sequence-parallel buffers, rotary embeddings, p2p
   communication): answers ``cpu``;
3. ``device="cuda"`` literals in the pipeline schedules, the optimizers and grad clipping, the
   DDP grad buffers, dist_checkpointing's exchange/save helpers and the default causal mask:
   tensor factories in those modules see a ``torch`` whose ``device="cuda"`` means the CPU;
4. the optimizer / grad-clip checks ``param.type() == 'torch.cuda.FloatTensor'``: a CPU float32
   tensor reports the CUDA type name (the check is about dtype, not placement);
5. ``torch.cuda.current_stream()`` / ``torch.cuda.stream()`` in DDP and
   ``torch.cuda.synchronize()`` in dist_checkpointing: host stand-ins whose waits are no-ops
   (CPU work and gloo collectives are synchronous);
6. Megatron's torch norm refusing ``sequence_parallel=True``: the project uses its own
   :class:`megatron_hybrid.layers.norms.RMSNorm`, which supports it, so nothing is patched.

Not a patch but part of the same story: on gloo the trainer turns off *batched* pipeline p2p
(``batch_p2p_comm=False``, ``training/engine.py``), because gloo matches messages between a pair
of ranks by order only and PP=2 interleaved schedules could receive an activation and a gradient
swapped.
"""

from __future__ import annotations

import contextlib
import types

import torch

_APPLIED = False


class _HostStream:
    """Stands in for a CUDA stream on the CPU: work is synchronous, so waits are no-ops."""

    def wait_stream(self, stream) -> None:
        pass

    def wait_event(self, event) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def record_event(self, event=None):
        return event


_HOST_STREAM = _HostStream()

# Modules that create tensors with a literal device="cuda" on paths a CPU run takes.
_CUDA_LITERAL_MODULES = (
    "megatron.core.pipeline_parallel.schedules",
    "megatron.core.optimizer.optimizer",
    "megatron.core.optimizer.distrib_optimizer",
    "megatron.core.optimizer.clip_grads",
    "megatron.core.distributed.param_and_grad_buffer",
    "megatron.core.dist_checkpointing.exchange_utils",
    "megatron.core.dist_checkpointing.strategies.state_dict_saver",
    "megatron.core.transformer.utils",
    "megatron.core.utils",  # the local (no-apex) multi_tensor_l2norm used for grad norms
)


def _cpu_device(device):
    if isinstance(device, str) and device.startswith("cuda"):
        return "cpu"
    if isinstance(device, torch.device) and device.type == "cuda":
        return torch.device("cpu")
    return device


def _torch_proxy_on_cpu() -> types.ModuleType:
    """A stand-in for the ``torch`` module whose tensor factories map ``device='cuda'`` to CPU."""
    proxy = types.ModuleType("torch_on_cpu")

    def factory(fn):
        def wrapped(*args, **kwargs):
            if "device" in kwargs:
                kwargs["device"] = _cpu_device(kwargs["device"])
            return fn(*args, **kwargs)

        return wrapped

    names = ("zeros", "ones", "empty", "tensor", "full", "empty_like", "zeros_like", "arange")
    factories = {name: factory(getattr(torch, name)) for name in names}

    def getattr_(name):
        return factories.get(name) or getattr(torch, name)

    proxy.__getattr__ = getattr_
    return proxy


def _reports_cuda_type(original_type):
    def tensor_type(self, dtype=None, non_blocking=False, **kwargs):
        if dtype is None and not kwargs:
            name = original_type(self)
            if self.device.type == "cpu" and name in ("torch.FloatTensor", "torch.BFloat16Tensor", "torch.HalfTensor"):
                return name.replace("torch.", "torch.cuda.")
            return name
        return original_type(self, dtype, non_blocking, **kwargs)

    return tensor_type


def enable_cpu_megatron() -> bool:
    """Apply the CPU compatibility patches when CUDA is absent. Idempotent.

    Returns True when the patches are (or already were) active.
    """
    global _APPLIED
    if torch.cuda.is_available():
        return False
    if _APPLIED:
        return True

    import importlib

    import megatron.core.tensor_parallel.random as mcore_random

    # 1. RNG: the stock tracker keeps per-name CUDA generator states; point it at the CPU one.
    torch.cuda.get_rng_state = lambda device="cuda": torch.get_rng_state()
    torch.cuda.manual_seed = lambda seed: torch.manual_seed(seed)
    mcore_random._get_cuda_rng_state = lambda device="cuda", clone=False, graph_safe=False: torch.get_rng_state()
    mcore_random._set_cuda_rng_state = lambda new_state, device=-1, graph_safe=False: torch.set_rng_state(new_state)

    # 2. The "current device" is the CPU.
    torch.cuda.current_device = lambda: torch.device("cpu")

    # 3. Tensors these modules create with device="cuda".
    proxy = _torch_proxy_on_cpu()
    for name in _CUDA_LITERAL_MODULES:
        importlib.import_module(name).torch = proxy

    # 4. dtype checks written as CUDA type names.
    torch.Tensor.type = _reports_cuda_type(torch.Tensor.type)

    # 5. Streams.
    torch.cuda.current_stream = lambda device=None: _HOST_STREAM
    torch.cuda.stream = lambda stream=None: contextlib.nullcontext()
    torch.cuda.synchronize = lambda device=None: None
    torch.cuda.synchronize = lambda device=None: None  # dist_checkpointing's save calls it

    _APPLIED = True
    return True
