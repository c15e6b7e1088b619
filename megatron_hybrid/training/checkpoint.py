"""Checkpoints through ``megatron.core.dist_checkpointing``, saved so a crash never loses one.

Layout under the save directory::

    iter_0000200/          a complete checkpoint (dist_checkpointing shards + meta.json)
    iter_0000400/
    latest                 text: the name of the newest complete checkpoint

A save writes ``iter_N.tmp/`` first, then (rank 0) renames it to ``iter_N`` and atomically
replaces ``latest`` (write ``latest.tmp``, fsync, ``os.replace``). A process killed at any
moment leaves ``latest`` naming a complete checkpoint; stale ``.tmp`` folders are removed by the
next save. Only the newest ``keep_last`` checkpoints are kept.

``meta.json`` records the model config and the parallel layout: loading a checkpoint of another
model is refused, and of another layout unless resharding is allowed, with a message naming the
differences. Megatron's sharded format itself reshards across TP/PP/DP when allowed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
from megatron.core import dist_checkpointing

from megatron_hybrid.compat import fused_adamw

LATEST = "latest"
META = "meta.json"


class CheckpointMismatchError(ValueError):
    """The checkpoint belongs to another model (or layout) than this run."""


def _name(step: int) -> str:
    return f"iter_{step:07d}"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest complete checkpoint in ``directory`` (per ``latest``), or None."""
    directory = Path(directory)
    pointer = directory / LATEST
    if not pointer.exists():
        return None
    path = directory / pointer.read_text().strip()
    if not (path / META).exists():
        raise FileNotFoundError(f"{pointer} names {path.name}, which is missing or incomplete")
    return path


def sharding_metadata(fully_reshardable: bool) -> dict:
    """How the distributed optimizer lays out its state: per-DP-shard buffers (fast, reshards
    only across DP) or gathered per-parameter tensors (slower, reshards across TP/PP too)."""
    return {"distrib_optim_sharding_type": "fully_reshardable" if fully_reshardable else "dp_reshardable"}


def _sharded_state(chunks, optimizer, is_loading: bool, metadata: dict) -> dict:
    metadata = dict(metadata)  # Megatron adds process groups to it: keep the caller's copy plain
    state = {}
    for i, chunk in enumerate(chunks):
        # The bare module, not its DDP wrapper: keys stay free of the wrapper's "module." prefix.
        state[f"model{i}"] = getattr(chunk, "module", chunk).sharded_state_dict(metadata=metadata)
    model_state = {k: v for k, v in state.items()}
    state["optimizer"] = optimizer.sharded_state_dict(model_state, is_loading=is_loading, metadata=metadata)
    return state


def save(
    directory, step, chunks, optimizer, scheduler, extra: dict, meta: dict, keep_last: int, metadata: dict
) -> Path:
    """Save a checkpoint for ``step`` on all ranks; returns its final path."""
    directory = Path(directory)
    rank = dist.get_rank()
    final, tmp = directory / _name(step), directory / (_name(step) + ".tmp")
    if rank == 0:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.tmp"):  # left by a run killed mid-save
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
        tmp.mkdir()
    dist.barrier()
    _materialize_adam_state(optimizer)  # a step-0 save (a shared initialisation) has no Adam state yet
    state = _sharded_state(chunks, optimizer, is_loading=False, metadata=metadata)
    state["scheduler"] = scheduler.state_dict()
    state["extra"] = extra  # step, consumed tokens, skip-detector history: plain objects, rank 0 writes them
    dist_checkpointing.save(state, str(tmp))
    dist.barrier()
    if rank == 0:
        _write_atomic(tmp / META, json.dumps(meta | {"step": step, "sharding": dict(metadata)}, indent=2, default=str))
        if final.exists():  # re-saving the same step (e.g. SIGTERM right after a periodic save)
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(directory)
        _write_atomic(directory / LATEST, final.name)
        _prune(directory, keep_last, keep=final.name)
    dist.barrier()
    return final


def _prune(directory: Path, keep_last: int, keep: str) -> None:
    done = sorted(p for p in directory.glob("iter_*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in done[:-keep_last]:
        if old.name != keep:
            shutil.rmtree(old, ignore_errors=True)


def read_meta(path: Path) -> dict:
    return json.loads((Path(path) / META).read_text())


def check_compatible(meta: dict, model_config: dict, layout: dict, allow_reshard: bool, path: Path) -> None:
    """Refuse a checkpoint of another model, or of another layout unless resharding is allowed."""
    saved = meta.get("model_config", {})
    diff = {k: (saved.get(k), v) for k, v in model_config.items() if saved.get(k) != v and k != "name"}
    diff |= {k: (v, None) for k, v in saved.items() if k not in model_config}
    if diff:
        lines = ", ".join(
            f"{k}: checkpoint {a!r} vs run {b!r}" for k, a, b in ((k, *v) for k, v in sorted(diff.items()))
        )
        raise CheckpointMismatchError(f"checkpoint {path} is of another model ({lines})")
    saved_layout = meta.get("layout", {})
    ldiff = {k: (saved_layout.get(k), v) for k, v in layout.items() if saved_layout.get(k) != v}
    if ldiff and not allow_reshard:
        lines = ", ".join(f"{k}: checkpoint {a} vs run {b}" for k, (a, b) in sorted(ldiff.items()))
        raise CheckpointMismatchError(
            f"checkpoint {path} was saved with another parallel layout ({lines}); "
            f"pass --allow-reshard true to reshard it on load"
        )


def _materialize_adam_state(optimizer) -> None:
    """Give a fresh AdamW the state slots a loaded checkpoint fills in.

    Without Transformer Engine or Apex, Megatron's distributed optimizer reads Adam's ``step``
    from the inner torch optimizer's state when building the state dict to load into, and a
    never-stepped optimizer has none. A zero-gradient step would create it but also apply weight
    decay, so the slots are created directly: zeros and step 0, exactly what AdamW's first step
    would create, so a run that then trains is unchanged (and a load overwrites them anyway).
    """
    from megatron.core.optimizer import distrib_optimizer

    if distrib_optimizer.HAVE_APEX_OR_TE:
        return  # fused Adam keeps its step in the param groups; Megatron's own path handles it
    for inner in fused_adamw.inner_torch_adam(optimizer):
        for group in inner.param_groups:
            for p in group["params"]:
                if len(inner.state[p]) == 0:
                    inner.state[p]["step"] = fused_adamw.step_tensor(0.0, p, bool(group.get("fused")))
                    inner.state[p]["exp_avg"] = torch.zeros_like(p.data)
                    inner.state[p]["exp_avg_sq"] = torch.zeros_like(p.data)


def _restore_adam_step(optimizer, loaded: dict) -> None:
    """Put the saved Adam step count back into torch's AdamW state.

    Without TE/Apex, Megatron 0.19 keeps the step in the saved param groups and writes it into
    the state it loads, but a state that already had slots (ours, see above) keeps step 0 and
    bias correction restarts: the first update after resuming would differ. Checked by
    tests/training/test_reliability.py (resume == uninterrupted).
    """
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    subs = getattr(optimizer, "chained_optimizers", [optimizer])
    saved = [loaded] if len(subs) == 1 else [loaded[k] for k in sorted(loaded)]
    for opt, state in zip(subs, saved):
        if not isinstance(opt, DistributedOptimizer) or not isinstance(state.get("optimizer"), dict):
            continue  # other optimizers restore torch's per-parameter state, step included
        steps = {g["step"] for g in state["optimizer"].get("param_groups", []) if "step" in g}
        inner = getattr(opt, "optimizer", None)
        if len(steps) != 1 or inner is None:
            continue
        step = float(steps.pop())
        for group in inner.param_groups:
            for param in group["params"]:
                slots = inner.state.get(param)
                if slots and "step" in slots:
                    slots["step"] = fused_adamw.step_tensor(step, param, bool(group.get("fused")))


def load(path, chunks, optimizer, scheduler) -> dict:
    """Load model, optimizer and scheduler state in place; return the ``extra`` dict."""
    _materialize_adam_state(optimizer)
    # loading restores the saved param groups, their 'fused' flags included: the run's own choice is put back after
    fused = fused_adamw.uses_fused(optimizer)
    metadata = read_meta(path).get("sharding", sharding_metadata(False))
    state = _sharded_state(chunks, optimizer, is_loading=True, metadata=metadata)
    loaded = dist_checkpointing.load(state, str(path))
    # no_grad: with fp32 params the optimizer's main-param shards are views of the parameters.
    with torch.no_grad():
        for i, chunk in enumerate(chunks):
            getattr(chunk, "module", chunk).load_state_dict(loaded[f"model{i}"])
        optimizer.load_state_dict(loaded["optimizer"])
        _restore_adam_step(optimizer, loaded["optimizer"])
        fused_adamw.set_fused(optimizer, fused)  # the run's choice, whichever the checkpoint was saved with
    scheduler.load_state_dict(loaded["scheduler"])
    return loaded["extra"]


def load_model_only(path, chunks) -> None:
    """Model weights only, from a checkpoint of any TP/PP layout (Megatron reshards on load)."""
    metadata = read_meta(path).get("sharding", sharding_metadata(False))
    state = {
        f"model{i}": getattr(c, "module", c).sharded_state_dict(metadata=dict(metadata)) for i, c in enumerate(chunks)
    }
    loaded = dist_checkpointing.load(state, str(path))
    with torch.no_grad():
        for i, chunk in enumerate(chunks):
            getattr(chunk, "module", chunk).load_state_dict(loaded[f"model{i}"])


def sync_path(path: Path | None) -> Path | None:
    """Every rank agrees on rank 0's answer (a shared filesystem may lag)."""
    obj = [str(path) if path is not None else None]
    dist.broadcast_object_list(obj, src=0)
    return Path(obj[0]) if obj[0] is not None else None


__all__ = ["save", "load", "latest_checkpoint", "read_meta", "check_compatible", "CheckpointMismatchError"]
