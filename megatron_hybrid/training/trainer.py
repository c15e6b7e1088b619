"""The pretraining loop on Megatron-Core: data -> pipeline schedule -> skip test -> optimizer step.

One call, :func:`train`, runs a whole job on every rank (torchrun, SLURM, or one process):

1. fail fast: layout, batch arithmetic, model config at this layout, data files and token ids;
2. build the model chunks, DDP, distributed optimizer and LR schedule (``engine.py``);
3. resume from the newest checkpoint if there is one (refusing another model's);
4. per step: ``get_forward_backward_func`` runs the micro-batches (gradient accumulation, PP
   schedules incl. interleaved), the loss (CE + z-loss) is averaged over all ranks, the grad norm
   is computed once, and the update is skipped if either spikes or is not finite; otherwise
   grads are clipped with that norm and the optimizer steps;
5. log, validate, checkpoint on schedule, and on SIGTERM save and exit cleanly.

The same code runs with NCCL on GPUs and gloo on a CPU (``compat.cpu``).
"""

from __future__ import annotations

import dataclasses
import signal
import time
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.optimizer.clip_grads import clip_grad_by_total_norm_fp32
from megatron.core.pipeline_parallel import get_forward_backward_func

from megatron_hybrid.compat import fused_adamw
from megatron_hybrid.compat.distributed import init_distributed
from megatron_hybrid.data import loader as default_loader
from megatron_hybrid.data.datasets import build_datasets
from megatron_hybrid.ops.norms import triton_runs_on
from megatron_hybrid.training import checkpoint as ckpt
from megatron_hybrid.training import model as model_api
from megatron_hybrid.training.config import TrainConfig
from megatron_hybrid.training.engine import build_engine
from megatron_hybrid.training.loss import lm_loss
from megatron_hybrid.training.monitor import Monitor, config_text
from megatron_hybrid.training.profiler import StepProfiler
from megatron_hybrid.training.runtime_env import apply_runtime_env
from megatron_hybrid.training.stability import SpikeDetector


class _SigtermFlag:
    """Remembers a SIGTERM (SLURM preemption) so the loop can save at the next step boundary."""

    def __init__(self, enabled: bool):
        self.received = False
        self._previous = None
        if enabled:
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.received = True

    def restore(self):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def default_eod(vocab_size: int) -> int:
    """dolma2's end-of-document id when the vocabulary has it, else the last id.

    Only bookkeeping for Megatron's dataset (stage 1 has no document masking).
    """
    return 100257 if vocab_size > 100257 else vocab_size - 1


def _forward_step(device, z_loss_weight, fused_loss, data_iterator, model):
    batch = next(data_iterator)
    tokens = batch["tokens"].to(device, non_blocking=True)
    labels = batch["labels"].to(device, non_blocking=True)
    position_ids = torch.arange(tokens.shape[1], device=device).unsqueeze(0).expand_as(tokens)
    output = model(tokens, position_ids, None)
    return output, partial(_loss_func, labels, z_loss_weight, fused=fused_loss)


def _loss_func(labels, z_loss_weight, logits, fused=False):
    ce, z = lm_loss(logits, labels, z_loss_weight, fused=fused)
    # torch.full, not torch.tensor: a Python scalar copied to the GPU is a synchronising copy, which would stop the
    # host from running ahead of the GPU once per micro-batch
    count = torch.full((), labels.numel(), device=labels.device, dtype=torch.int)
    stats = torch.stack([ce.detach().sum(), z.detach().sum(), count.float()])
    # Megatron divides by the token count and the number of micro-batches: a per-token mean.
    return (ce + z).sum(), count, {"stats": stats}


def _reduce_stats(losses: list, device) -> tuple[float, float]:
    """(mean CE, mean z-loss) over every token of the global batch, the same on every rank.

    Only last-stage ranks hold losses; summing over the whole world counts each of them once
    per TP rank, in numerator and denominator alike, so the ratio is exact.
    """
    total = torch.zeros(3, dtype=torch.float64, device=device)
    for item in losses:
        total += item["stats"].to(device=device, dtype=torch.float64)
    dist.all_reduce(total)
    n = total[2].item()
    return (total[0] / n).item(), (total[1] / n).item()


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.runtime_env = apply_runtime_env()  # before CUDA and NCCL start: they read it once
        self.device = init_distributed(
            cfg.tensor_model_parallel_size,
            cfg.pipeline_model_parallel_size,
            cfg.virtual_pipeline_model_parallel_size,
            cfg.seed,
        )
        self.world = dist.get_world_size()
        cfg.check(self.world)
        if cfg.fused_cross_entropy is None:  # resolved here, so the log and every micro-batch agree
            cfg.fused_cross_entropy = triton_runs_on(self.device)
        elif cfg.fused_cross_entropy and not triton_runs_on(self.device):
            raise ValueError("fused_cross_entropy: true needs CUDA (Triton kernels); set it to null or false")
        if cfg.fused_adam is None:
            cfg.fused_adam = self.device.type == "cuda"
        self.dp_size = parallel_state.get_data_parallel_world_size()
        self.dp_rank = parallel_state.get_data_parallel_rank()
        self.num_micro = cfg.global_batch_size // (cfg.micro_batch_size * self.dp_size)
        self.train_iters = cfg.resolved_train_iters()

        self.model_cfg = model_api.model_config(cfg.model, cfg.model_overrides)
        self.model_cfg.validate(
            cfg.tensor_model_parallel_size, cfg.pipeline_model_parallel_size, cfg.virtual_pipeline_model_parallel_size
        )
        vocab = self.model_cfg.vocab_size
        eod = cfg.eod_token_id if cfg.eod_token_id is not None else default_eod(vocab)
        valid_samples = cfg.eval_iters * cfg.global_batch_size if cfg.eval_interval > 0 else 0
        cache = cfg.data_cache_path or str(Path(cfg.save or "runs") / "data_cache")
        # Data first: a bad file should fail in seconds, not after the model is built.
        self.train_ds, self.valid_ds = build_datasets(
            cfg, vocab, eod, self.train_iters * cfg.global_batch_size, valid_samples, cache
        )

        self.layout = {
            "tensor_model_parallel_size": cfg.tensor_model_parallel_size,
            "pipeline_model_parallel_size": cfg.pipeline_model_parallel_size,
            "virtual_pipeline_model_parallel_size": cfg.virtual_pipeline_model_parallel_size,
            "data_parallel_size": self.dp_size,
            "use_distributed_optimizer": cfg.use_distributed_optimizer,
        }
        # ... and so should a checkpoint of another model or layout.
        self.resume_from = self._find_checkpoint()
        self.engine = build_engine(cfg)
        self.detector = SpikeDetector(
            cfg.skip_spike_sigma, cfg.skip_spike_window, cfg.skip_spike_min_history, cfg.max_nonfinite_steps
        )
        self.step = 0
        self.is_logger = (
            parallel_state.is_pipeline_last_stage(ignore_virtual=True)
            and parallel_state.get_tensor_model_parallel_rank() == 0
            and self.dp_rank == 0
        )
        self.monitor = Monitor(
            cfg.tensorboard_dir,
            self.is_logger,
            model_api.flops_per_token(self.model_cfg, cfg.seq_length),
            self.world,
            cfg.peak_tflops,
            self.train_iters,
            cfg.tokens_per_step,
            config_text(cfg.to_dict()),
        )
        profile_dir = cfg.profile_dir or (str(Path(cfg.tensorboard_dir) / "profile") if cfg.tensorboard_dir else None)
        self.profiler = StepProfiler(
            cfg.profile_step_start, cfg.profile_steps, list(cfg.profile_ranks), profile_dir, dist.get_rank(), cfg.model
        )
        self.history: dict[int, dict] = {}
        self._saved_step: int | None = None
        self.forward_backward = get_forward_backward_func()
        self._maybe_resume()

    # ------------------------------------------------------------------------------------------
    def _find_checkpoint(self) -> Path | None:
        """The checkpoint to resume from (checked against this model and layout), or None."""
        directory = self.cfg.load or self.cfg.save
        path = ckpt.latest_checkpoint(directory) if directory and dist.get_rank() == 0 else None
        path = ckpt.sync_path(path)
        if path is not None:
            meta = ckpt.read_meta(path)
            model_cfg = model_api.config_dict(self.model_cfg)
            ckpt.check_compatible(meta, model_cfg, self.layout, self.cfg.allow_reshard, path)
        return path

    def _maybe_resume(self) -> None:
        path = self.resume_from
        if path is None:
            if self.cfg.pretrained_checkpoint:
                self._init_from(self.cfg.pretrained_checkpoint)
            return
        e = self.engine
        extra = ckpt.load(path, e.chunks, e.optimizer, e.scheduler)
        self.step = int(extra["step"])
        self.detector.load_state_dict(extra["detector"])
        self.monitor.print(f"resumed from {path} at step {self.step}")

    def _init_from(self, source: str) -> None:
        """Fresh run, given weights: e.g. one initialisation shared by several layouts."""
        path = Path(source)
        if not (path / ckpt.META).exists():
            path = ckpt.latest_checkpoint(path)
        if path is None or not (path / ckpt.META).exists():
            raise FileNotFoundError(f"pretrained_checkpoint {source}: no checkpoint there")
        meta = ckpt.read_meta(path)
        ckpt.check_compatible(meta, model_api.config_dict(self.model_cfg), self.layout, True, path)
        ckpt.load_model_only(path, self.engine.chunks)
        self.engine.optimizer.reload_model_params()  # its fp32 main copy must follow the new weights
        self.monitor.print(f"initialised model weights from {path}")

    def save(self) -> Path:
        e = self.engine
        meta = {
            "model_config": model_api.config_dict(self.model_cfg),
            "layout": self.layout,
            "train_config": self.cfg.to_dict(),
            "tokens": self.step * self.cfg.tokens_per_step,
        }
        extra = {"step": self.step, "detector": self.detector.state_dict()}
        self._saved_step = self.step
        path = ckpt.save(
            self.cfg.save,
            self.step,
            e.chunks,
            e.optimizer,
            e.scheduler,
            extra,
            meta,
            self.cfg.keep_last,
            ckpt.sharding_metadata(self.cfg.ckpt_fully_reshardable),
        )
        self.monitor.print(f"saved checkpoint {path}")
        return path

    # ------------------------------------------------------------------------------------------
    def _iterators(self, dataset, start_step: int, num_steps: int):
        """One iterator per model chunk (interleaved schedules call each chunk's own)."""
        cfg = self.cfg
        make = default_loader.micro_batches
        kwargs = {}
        if cfg.data_loader == "dali":
            from megatron_hybrid.data import dali

            make = dali.micro_batches
        its = [
            make(
                dataset,
                start_step,
                num_steps,
                cfg.micro_batch_size,
                self.dp_size,
                self.dp_rank,
                cfg.global_batch_size,
                num_workers=cfg.num_workers,
                **kwargs,
            )
            for _ in self.engine.chunks
        ]
        return its if len(its) > 1 else its[0]

    def _run_schedule(self, iterators, forward_only: bool) -> list:
        return self.forward_backward(
            forward_step_func=partial(_forward_step, self.device, self.cfg.z_loss_weight, self.cfg.fused_cross_entropy),
            data_iterator=iterators,
            model=self.engine.chunks,
            num_microbatches=self.num_micro,
            seq_length=self.cfg.seq_length,
            micro_batch_size=self.cfg.micro_batch_size,
            forward_only=forward_only,
        )

    def train_step(self, iterators) -> dict:
        e = self.engine
        for chunk in e.chunks:
            chunk.zero_grad_buffer()
        e.optimizer.zero_grad()
        losses = self._run_schedule(iterators, forward_only=False)
        loss, z_loss = _reduce_stats(losses, self.device)
        found_inf = e.optimizer.prepare_grads()  # fp32/bf16: no loss scaler, so always False
        grad_norm = float(e.optimizer.get_grad_norm())
        reason = self.detector.judge(loss, grad_norm) if not found_inf else "overflow"
        e.scheduler.step(1)  # the LR of update k is the schedule at k (warmup starts above zero)
        if reason is None:
            if self.cfg.clip_grad > 0:
                clip_grad_by_total_norm_fp32(e.optimizer.get_parameters(), self.cfg.clip_grad, grad_norm)
            e.optimizer.step_with_ready_grads()
        self.step += 1
        lr = e.optimizer.param_groups[0]["lr"]
        return {"loss": loss, "z_loss": z_loss, "grad_norm": grad_norm, "lr": lr, "skipped": reason}

    def evaluate(self) -> float | None:
        if self.valid_ds is None or self.cfg.eval_iters <= 0:
            return None
        for chunk in self.engine.chunks:
            chunk.eval()
        iterators = self._iterators(self.valid_ds, 0, self.cfg.eval_iters)
        total = 0.0
        with torch.no_grad():
            for _ in range(self.cfg.eval_iters):
                loss, _ = _reduce_stats(self._run_schedule(iterators, forward_only=True), self.device)
                total += loss
        for chunk in self.engine.chunks:
            chunk.train()
        return total / self.cfg.eval_iters

    def _agree(self, code: int) -> int:
        """The largest ``code`` over all ranks (signals reach ranks at different moments)."""
        t = torch.tensor([code], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    # ------------------------------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.cfg
        start = self.step
        remaining = self.train_iters - start
        if cfg.exit_interval is not None:
            remaining = min(remaining, cfg.exit_interval)
        self.monitor.print(
            f"training {cfg.model} ({model_api.builder_name()}) from step {start} to {start + remaining} "
            f"of {self.train_iters} on {self.world} rank(s): TP={cfg.tensor_model_parallel_size} "
            f"PP={cfg.pipeline_model_parallel_size} VP={cfg.virtual_pipeline_model_parallel_size} DP={self.dp_size}, "
            f"{self.num_micro} micro-batch(es) of {cfg.micro_batch_size} x {cfg.seq_length} per step; "
            f"wgrad fusion {'on' if self.engine.transformer_config.gradient_accumulation_fusion else 'off'}, "
            f"async TP {'on' if cfg.async_tensor_parallel else 'off'}, "
            f"fused loss {'on' if cfg.fused_cross_entropy else 'off'}, "
            f"fused AdamW {'on' if fused_adamw.uses_fused(self.engine.optimizer) else 'off'}; "
            + " ".join(f"{key}={value}" for key, value in self.runtime_env.items())
        )
        sigterm = _SigtermFlag(cfg.exit_on_sigterm)
        iterators = self._iterators(self.train_ds, start, remaining)
        stopped_by = "done"
        t0 = time.perf_counter()
        try:
            for _ in range(remaining):
                self.profiler.before_step(self.step + 1)
                out = self.train_step(iterators)
                written = self.profiler.after_step(self.step)
                if written is not None:
                    print(f"[rank {dist.get_rank()}] profile of steps {cfg.profile_step_start}.. written: {written}")
                self.history[self.step] = out
                tokens = self.step * cfg.tokens_per_step
                if out["skipped"]:
                    self.monitor.record_skip(self.step, out["skipped"], out["loss"], out["grad_norm"])
                log_now = self.step % cfg.log_interval == 0 or self.step == self.train_iters
                self.monitor.record_step(
                    self.step, tokens, {**out, "skipped_total": self.detector.skipped_total}, log_now
                )
                if cfg.eval_interval > 0 and (self.step % cfg.eval_interval == 0 or self.step == self.train_iters):
                    val = self.evaluate()
                    if val is not None:
                        out["val_loss"] = val
                        self.monitor.record_validation(self.step, tokens, val)
                stop_file = bool(cfg.stop_file) and dist.get_rank() == 0 and Path(cfg.stop_file).exists()
                reason = self._agree(2 if sigterm.received else 1 if stop_file else 0)  # any rank's signal counts
                if reason:
                    stopped_by = "SIGTERM" if reason == 2 else "stop file"
                    break
                if cfg.save and self.step % cfg.save_interval == 0:
                    self.save()
        finally:
            sigterm.restore()
        end_of_segment = stopped_by != "done" or self.step == self.train_iters or cfg.exit_interval is not None
        # Not again if the step is already saved (periodic save, or a resumed run with nothing left).
        if cfg.save and end_of_segment and self._saved_step != self.step and not (self.step == start > 0):
            self.save()
        if stopped_by != "done":
            if stopped_by == "stop file" and dist.get_rank() == 0:
                Path(cfg.stop_file).unlink(missing_ok=True)  # the requeued job must not stop at once
            self.monitor.print(
                f"{stopped_by}: saved at step {self.step}; exiting cleanly (resume with the same command)"
            )
        self.monitor.close()
        return {
            "step": self.step,
            "stopped_by": stopped_by,
            "seconds": time.perf_counter() - t0,
            "losses": {s: h["loss"] for s, h in self.history.items()},
            "history": self.history,
        }


def train(cfg: TrainConfig) -> dict:
    """Run (or resume) the job described by ``cfg`` on this rank; returns a summary."""
    return Trainer(dataclasses.replace(cfg)).run()
