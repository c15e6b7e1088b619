"""What a run reports: TensorBoard scalars, one console line per log interval, throughput and MFU.

TensorBoard (written by one rank, the last pipeline stage's first rank, where the loss lives):
``train/loss``, ``train/z_loss``, ``train/lr``, ``train/grad_norm``, ``train/skipped_steps``,
``perf/tokens_per_s``, ``perf/tflops_per_gpu``, ``perf/mfu``, ``perf/peak_memory_gib``,
``val/loss``, ``val/ppl``, and the resolved config as text. The x axis is the step; every
scalar is also written against tokens seen under ``by_tokens/`` (what ``compare`` plots).

TFLOP/s per GPU = (model FLOPs per token, fwd+bwd, incl. attention and GDN terms) x tokens/s /
GPUs; MFU divides that by the card's dense bf16 peak (989 TFLOP/s for an H100 SXM).
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time

import torch


def peak_memory_gib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    # CPU: the process's peak resident set (Linux reports KiB).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _fmt_tokens(n: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def _fmt_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Monitor:
    def __init__(
        self,
        tensorboard_dir,
        is_writer: bool,
        flops_per_token: float,
        world_size: int,
        peak_tflops: float,
        total_steps: int,
        tokens_per_step: int,
        config_text: str,
        stream=sys.stdout,
    ):
        self.is_writer = is_writer
        self.flops_per_token, self.world_size, self.peak_tflops = flops_per_token, world_size, peak_tflops
        self.total_steps, self.tokens_per_step = total_steps, tokens_per_step
        self.stream = stream
        self.writer = None
        if is_writer and tensorboard_dir:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(tensorboard_dir))
            self.writer.add_text("config", "```\n" + config_text + "\n```", 0)
        self._window_start = time.perf_counter()
        self._window_steps = 0
        self._window_sums: dict[str, float] = {}

    def print(self, msg: str) -> None:
        if self.is_writer:
            print(msg, file=self.stream, flush=True)

    def scalar(self, tag: str, value: float, step: int, tokens: int) -> None:
        if self.writer is not None and value is not None and math.isfinite(value):
            self.writer.add_scalar(tag, value, step)
            self.writer.add_scalar("by_tokens/" + tag, value, tokens)

    def record_step(self, step: int, tokens: int, values: dict, log_now: bool) -> None:
        """Accumulate one step; every log interval, write averages and a console line."""
        self._window_steps += 1
        for k, v in values.items():
            if isinstance(v, int | float) and math.isfinite(v):
                self._window_sums[k] = self._window_sums.get(k, 0.0) + v
        if not log_now:
            return
        elapsed = time.perf_counter() - self._window_start
        n = self._window_steps
        avg = {k: v / n for k, v in self._window_sums.items()}
        tokens_per_s = n * self.tokens_per_step / max(elapsed, 1e-9)
        tflops = self.flops_per_token * tokens_per_s / self.world_size / 1e12
        mfu = tflops / self.peak_tflops
        mem = peak_memory_gib()
        for key in ("loss", "z_loss", "grad_norm"):
            if key in avg:
                self.scalar(f"train/{key}", avg[key], step, tokens)
        self.scalar("train/lr", values.get("lr"), step, tokens)
        self.scalar("train/skipped_steps", values.get("skipped_total", 0), step, tokens)
        self.scalar("perf/tokens_per_s", tokens_per_s, step, tokens)
        self.scalar("perf/tflops_per_gpu", tflops, step, tokens)
        self.scalar("perf/mfu", mfu, step, tokens)
        self.scalar("perf/peak_memory_gib", mem, step, tokens)
        eta = (self.total_steps - step) * elapsed / n
        nan = float("nan")
        skipped = int(values.get("skipped_total", 0))
        self.print(
            f"step {step:>7}/{self.total_steps} | tokens {_fmt_tokens(tokens):>8} | loss {avg.get('loss', nan):.4f}"
            f" | z {avg.get('z_loss', nan):.2e} | lr {values.get('lr', 0):.3e} | gnorm {avg.get('grad_norm', nan):.3f}"
            f" | {tokens_per_s:,.0f} tok/s | {tflops:.3g} TFLOP/s/gpu | MFU {100 * mfu:.3g}% | mem {mem:.1f} GiB"
            f" | skipped {skipped} | ETA {_fmt_eta(eta)}"
        )
        if self.writer is not None:
            self.writer.flush()
        self._window_start, self._window_steps, self._window_sums = time.perf_counter(), 0, {}

    def record_validation(self, step: int, tokens: int, loss: float) -> None:
        ppl = math.exp(min(loss, 50.0))
        self.scalar("val/loss", loss, step, tokens)
        self.scalar("val/ppl", ppl, step, tokens)
        self.print(f"validation at step {step} | loss {loss:.4f} | ppl {ppl:.2f}")
        if self.writer is not None:
            self.writer.flush()

    def record_skip(self, step: int, reason: str, loss: float, grad_norm: float) -> None:
        self.print(f"step {step}: skipped the optimizer update ({reason}; loss {loss:.4g}, grad norm {grad_norm:.4g})")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def config_text(cfg_dict: dict) -> str:
    return json.dumps(cfg_dict, indent=2, default=str)
