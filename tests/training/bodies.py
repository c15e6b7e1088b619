"""Per-rank bodies of the trainer tests (run in spawned gloo processes by tests/distributed_harness.py).

Each body builds a :class:`TrainConfig` from ``base_config`` plus overrides, trains, and returns
plain values (losses per step, flags) for the test to compare.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def base_config(prefix: str, workdir: str, **overrides):
    from megatron_hybrid.training.config import load_config

    values = dict(
        model="tiny_hybrid",
        model_overrides={"vocab_size": 320},
        eod_token_id=256,
        seq_length=32,
        micro_batch_size=2,
        global_batch_size=8,
        train_iters=4,
        lr=3e-3,
        lr_warmup_iters=2,
        bf16=False,
        num_workers=0,
        eval_interval=0,
        log_interval=1,
        data_path=[prefix],
        split="90,10,0",
        data_cache_path=str(Path(workdir) / "cache"),
    )
    values.update(overrides)
    return load_config(None, values)


def train_losses(rank, world_size, prefix, workdir, overrides):
    from megatron_hybrid.training.trainer import train

    out = train(base_config(prefix, workdir, **overrides))
    return {"losses": out["losses"], "step": out["step"], "stopped_by": out["stopped_by"]}


def resume_matches(rank, world_size, prefix, workdir, overrides, resume_overrides=None):
    """Uninterrupted run vs. the same run stopped at step 3 (checkpoint) and resumed; ``resume_overrides`` change the
    resumed run's settings over ``overrides`` (e.g. a checkpoint resumed with the other AdamW implementation)."""
    from megatron_hybrid.training.trainer import train

    full = train(base_config(prefix, workdir, train_iters=6, **overrides))["losses"]
    ckpt = str(Path(workdir) / "ckpt")
    first = train(
        base_config(prefix, workdir, train_iters=6, save=ckpt, save_interval=100, exit_interval=3, **overrides)
    )
    from megatron_hybrid.compat import fused_adamw
    from megatron_hybrid.training.trainer import Trainer

    resumed_overrides = overrides | (resume_overrides or {})
    resumed = Trainer(base_config(prefix, workdir, train_iters=6, save=ckpt, save_interval=100, **resumed_overrides))
    fused_after_load = fused_adamw.uses_fused(resumed.engine.optimizer)  # the loaded groups, flag put back
    second = resumed.run()
    return {"full": full, "first": first["losses"], "second": second["losses"], "fused_after_load": fused_after_load}


def killed_during_save(prefix, workdir):
    """Train 2 steps (checkpoint at 2), then die by SIGKILL inside the save of step 4. Runs in a process group of
    its own, so the test can kill what it leaves behind (workers the kill orphans), as a cluster kills a job."""
    os.setpgrp()
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=os.environ.get("TEST_PORT", "29533"),
        RANK="0",
        WORLD_SIZE="1",
        LOCAL_RANK="0",
        OMP_NUM_THREADS="1",
    )
    from megatron_hybrid.training import checkpoint
    from megatron_hybrid.training.trainer import train

    real_save = checkpoint.dist_checkpointing.save

    def save_then_die(state, path, *args, **kwargs):
        real_save(state, path, *args, **kwargs)
        if path.endswith("iter_0000004.tmp"):  # shards written, pointer not yet switched
            os.kill(os.getpid(), signal.SIGKILL)

    checkpoint.dist_checkpointing.save = save_then_die
    train(base_config(prefix, workdir, train_iters=6, save=str(Path(workdir) / "ckpt"), save_interval=2))


def resume_after_kill(rank, world_size, prefix, workdir):
    from megatron_hybrid.training import checkpoint
    from megatron_hybrid.training.trainer import Trainer

    ckpt = Path(workdir) / "ckpt"
    latest = checkpoint.latest_checkpoint(ckpt)
    trainer = Trainer(base_config(prefix, workdir, train_iters=6, save=str(ckpt), save_interval=2))
    resumed_at = trainer.step
    out = trainer.run()
    leftovers = sorted(p.name for p in ckpt.glob("*.tmp"))
    return {
        "latest": latest.name,
        "resumed_at": resumed_at,
        "final": out["step"],
        "tmp_left": leftovers,
        "losses": out["losses"],
    }


def failures(rank, world_size, prefix, workdir):
    """Bad input fails before training with a named cause; NaN steps are skipped, then stop; SIGTERM saves."""
    import torch

    from megatron_hybrid.data.checks import DataError
    from megatron_hybrid.training import trainer as trainer_mod
    from megatron_hybrid.training.checkpoint import CheckpointMismatchError
    from megatron_hybrid.training.stability import NonFiniteLossError

    results = {}
    # 1. token ids >= vocab: byte data (ids up to 256) for a 200-token model.
    try:
        trainer_mod.Trainer(base_config(prefix, workdir, model_overrides={"vocab_size": 200}))
        results["vocab"] = "no error"
    except DataError as e:
        results["vocab"] = str(e)
    # 1b. the fused loss asked for on a machine without CUDA.
    try:
        trainer_mod.Trainer(base_config(prefix, workdir, fused_cross_entropy=True))
        results["fused_loss"] = "no error"
    except ValueError as e:
        results["fused_loss"] = str(e)
    # 2. SIGTERM to every process of the job after step 2 (as SLURM preemption does, data workers
    #    included): saves and exits cleanly. The rank leads its own process group for this.
    ckpt = str(Path(workdir) / "sigterm")
    real_step = trainer_mod.Trainer.train_step
    os.setpgrp()

    def step_then_sigterm(self, iterators):
        out = real_step(self, iterators)
        if self.step == 2:
            os.killpg(os.getpgrp(), signal.SIGTERM)
        return out

    trainer_mod.Trainer.train_step = step_then_sigterm
    try:
        out = trainer_mod.train(base_config(prefix, workdir, train_iters=6, save=ckpt, num_workers=1))
    finally:
        trainer_mod.Trainer.train_step = real_step
    results["sigterm"] = (out["stopped_by"], out["step"], (Path(ckpt) / "latest").read_text().strip())
    # 2b. the SLURM time-limit path: a stop file present -> checkpoint after the next step, file removed.
    stop = Path(workdir) / "STOP"
    stop.touch()
    out = trainer_mod.train(
        base_config(prefix, workdir, train_iters=6, save=str(Path(workdir) / "stopfile"), stop_file=str(stop))
    )
    results["stop_file"] = (out["stopped_by"], out["step"], stop.exists())
    # 3. the same checkpoint refused by another model.
    try:
        trainer_mod.Trainer(
            base_config(
                prefix, workdir, train_iters=6, save=ckpt, model_overrides={"vocab_size": 320, "ffn_hidden": 64}
            )
        )
        results["mismatch"] = "no error"
    except CheckpointMismatchError as e:
        results["mismatch"] = str(e)
    # 4. one NaN loss: that update is skipped (weights unchanged), training goes on.
    real_loss = trainer_mod._loss_func
    calls = {"n": 0, "nan_from": 9, "nan_to": 9}  # 4 micro-batches per step: the first of step 3 is NaN

    def nan_loss(labels, z_loss_weight, logits, **kwargs):
        calls["n"] += 1
        if calls["nan_from"] <= calls["n"] <= calls["nan_to"]:
            logits = logits * float("nan")
        return real_loss(labels, z_loss_weight, logits, **kwargs)

    trainer_mod._loss_func = nan_loss
    try:
        t = trainer_mod.Trainer(base_config(prefix, workdir, train_iters=5))
        params = lambda: torch.cat([p.detach().flatten().clone() for p in t.engine.chunks[0].parameters()])  # noqa: E731
        snapshots = {}
        real = t.train_step

        def tracked(iterators):
            out = real(iterators)
            snapshots[t.step] = params()
            return out

        t.train_step = tracked
        out = t.run()
        results["nan_skip"] = {
            "skipped": {s: h["skipped"] for s, h in out["history"].items()},
            "unchanged_at_3": bool(torch.equal(snapshots[2], snapshots[3])),
            "changed_at_4": not bool(torch.equal(snapshots[3], snapshots[4])),
            "final_finite": bool(out["losses"][5] == out["losses"][5]),
        }
        # 5. NaN forever: stops after max_nonfinite_steps with a message.
        calls.update(n=0, nan_from=1, nan_to=10**9)
        try:
            trainer_mod.train(base_config(prefix, workdir, train_iters=10, max_nonfinite_steps=3))
            results["nan_stop"] = "no error"
        except NonFiniteLossError as e:
            results["nan_stop"] = str(e)
    finally:
        trainer_mod._loss_func = real_loss
    return results


def loss_falls_with_tensorboard(rank, world_size, prefix, workdir):
    import torch
    import torch.nn.functional as F

    from megatron_hybrid.training.loss import lm_loss
    from megatron_hybrid.training.trainer import train

    tb = Path(workdir) / "tb"
    out = train(
        base_config(
            prefix,
            workdir,
            train_iters=30,
            lr_warmup_iters=3,
            log_interval=5,
            eval_interval=15,
            eval_iters=1,
            tensorboard_dir=str(tb),
        )
    )
    # The loss itself against PyTorch's, on the process group the run left initialised (TP=1).
    logits = torch.randn(2, 5, 320) * 3
    targets = torch.randint(0, 320, (2, 5))
    ce, z = lm_loss(logits, targets, 1e-4)
    ref_ce = F.cross_entropy(logits.double().reshape(-1, 320), targets.reshape(-1), reduction="none").reshape(2, 5)
    ref_z = 1e-4 * torch.logsumexp(logits.double(), dim=-1) ** 2
    loss_error = max(float((ce - ref_ce).abs().max()), float((z - ref_z).abs().max()))
    return {"losses": out["losses"], "tb": str(tb), "loss_error": loss_error}


def profiled_run(rank, world_size, prefix, workdir):
    """Steps 2..3 of a 4-step run under the profiler: what the profiled rank wrote."""
    from megatron_hybrid.training.trainer import train

    out_dir = Path(workdir) / "prof"
    out = train(base_config(prefix, workdir, profile_step_start=2, profile_steps=2, profile_dir=str(out_dir)))
    return {"step": out["step"], "files": sorted(p.name for p in out_dir.glob("*")) if out_dir.exists() else []}


def micro_batch_sync_error(rank, world_size, prefix, workdir, overrides):
    """One micro-batch of the trainer's forward, loss and backward under CUDA's sync debug mode "error": the message
    of the first host-synchronising call (``.item()``, a pageable host-to-device copy, ...), or None. A sync there
    stops the host from running ahead of the GPU once per micro-batch. A first micro-batch warms up (compiles)."""
    import torch

    from megatron_hybrid.training.trainer import Trainer, _forward_step

    trainer = Trainer(base_config(prefix, workdir, **overrides))
    model, cfg = trainer.engine.chunks[0], trainer.cfg
    batches = trainer._iterators(trainer.train_ds, 0, 1)

    def micro_batch():
        output, loss_func = _forward_step(trainer.device, cfg.z_loss_weight, cfg.fused_cross_entropy, batches, model)
        loss, _count, _stats = loss_func(output)
        loss.backward()

    micro_batch()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        micro_batch()
    except RuntimeError as err:
        return str(err).splitlines()[0]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return None
