"""Run a test body on N gloo processes (CPU) and collect what each rank returns.

    results = run_on_ranks(body, world_size=2, args=(...))  # body(rank, world_size, *args)

The body runs in a fresh spawned process with MASTER_ADDR/PORT, RANK, WORLD_SIZE set, so it can
call ``megatron_hybrid.compat.distributed.init_distributed``. Exceptions in any rank fail the
caller with that rank's traceback. Bodies must be importable module-level functions.
"""

from __future__ import annotations

import io
import os
import socket
import traceback

import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, world_size, port, body, args, queue):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        OMP_NUM_THREADS="1",
    )
    import torch

    torch.set_num_threads(1)
    try:
        buffer = io.BytesIO()
        torch.save(body(rank, world_size, *args), buffer)  # bytes, not shared-memory handles
        queue.put((rank, "ok", buffer.getvalue()))
    except BaseException:
        queue.put((rank, "error", traceback.format_exc()))
    finally:
        from megatron_hybrid.compat.distributed import destroy_distributed

        destroy_distributed()


def run_on_ranks(body, world_size: int, args: tuple = (), timeout: float = 600.0) -> list:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_entry, args=(r, world_size, port, body, args, queue)) for r in range(world_size)]
    for p in procs:
        p.start()
    results: dict[int, object] = {}
    errors = []
    for _ in range(world_size):
        rank, status, payload = queue.get(timeout=timeout)
        if status == "error":
            errors.append(f"rank {rank}:\n{payload}")
        else:
            import torch

            results[rank] = torch.load(io.BytesIO(payload), weights_only=False)
    for p in procs:
        p.join(timeout)
        if p.is_alive():
            p.kill()
    if errors:
        raise AssertionError("\n".join(errors))
    return [results[r] for r in range(world_size)]
