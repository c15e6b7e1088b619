"""The ladder's run plan: LR and batch from model size, token budget from GPU minutes.

Pure arithmetic (no torch, no data), so ``run.py --dry-run`` and the tests can check it anywhere.

Rules (facts from OLMo-core's model ladder, which cites Porian et al. 2024, "Resolving
Discrepancies in Compute-Optimal Scaling of Language Models"; N = the nominal ladder size):
- peak LR = 0.0047 * (N / 108M)^(-1/3), divided by (seq / 2048)^2 above 2048 (OLMo-core's /4 at
  4096, /16 at 8192);
- batch = 160 * (N / 108M)^(2/3) sequences of 2048 tokens, i.e. the same tokens per step at any
  sequence length; rounded to a multiple of the micro-batch;
- warmup = N tokens (OLMo-core: round(N / batch tokens) steps), capped at ``warmup_cap`` of the run
  because our runs are ~1000x shorter than the ladder's;
- WSD: constant after warmup, linear decay to 0 over the last ``decay_fraction`` of the steps
  (OLMo-core's WSD ladder uses 0.25; the paper's recipe is WSD-style).
Every arm of a size gets the same LR, batch, steps, warmup, seed and data: nothing is per arm.

Token budget: the GPU minutes are shared equally by the sizes; within a size every arm trains the
same tokens, so tokens = (share - arms x startup) / sum over arms of (1 / tokens_per_s), less the
validation passes (a forward pass costs ~1/3 of a training step per token). Throughputs are
ASSUMED (``ASSUMED_TOKENS_PER_S``) until measured: ``report.py`` writes ``throughput.json`` from
each run's ``perf/tokens_per_s``, which ``run.py --throughput`` reads back.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Assumed H100 bf16 training tokens/s at seq 4096 (vocab 16384), guessed from FLOPs/token
# (megatron_hybrid estimate: 60m ~0.20 GFLOP transformer, ~0.16 hybrid) at a low MFU for models
# this small, and GDN layers (Triton kernels, small heads) assumed ~25% slower per token than
# attention. REPLACE with measured values (report.py -> throughput.json) before trusting a budget.
ASSUMED_TOKENS_PER_S = {
    "60m": {"transformer": 400_000, "hybrid": 300_000, "gdn": 280_000, "hybrid_1to1": 330_000, "hybrid_7to1": 290_000},
    "100m": {"transformer": 250_000, "hybrid": 190_000, "gdn": 180_000, "hybrid_1to1": 210_000, "hybrid_7to1": 185_000},
    "190m": {"transformer": 140_000, "hybrid": 110_000, "gdn": 105_000, "hybrid_1to1": 120_000, "hybrid_7to1": 108_000},
    "370m": {"transformer": 75_000, "hybrid": 60_000, "gdn": 57_000, "hybrid_1to1": 65_000, "hybrid_7to1": 58_000},
}
# Micro-batch (sequences of 4096) per size on one 80 GB card; the global batch is rounded to it.
MICRO_BATCH = {"60m": 8, "100m": 8, "190m": 4, "370m": 4, "600m": 2, "760m": 2, "1b": 1}


def nominal_params(size: str) -> float:
    """'60m' -> 6e7, '1b' -> 1e9."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([mb])", size.lower())
    if not m:
        raise ValueError(f"size {size!r}: expected e.g. 60m, 100m, 1b")
    return float(m.group(1)) * (1e6 if m.group(2) == "m" else 1e9)


def ladder_lr(size: str, seq_length: int) -> float:
    lr = 0.0047 * (nominal_params(size) / 108e6) ** (-1 / 3)
    return lr / (max(seq_length, 2048) / 2048) ** 2


def ladder_batch(size: str, seq_length: int, micro_batch: int) -> int:
    """Global batch in sequences, a multiple of ``micro_batch``."""
    sequences = 160 * (nominal_params(size) / 108e6) ** (2 / 3) * 2048 / seq_length
    return max(micro_batch, micro_batch * round(sequences / micro_batch))


@dataclass
class Budget:
    """What the whole ladder may spend, and the knobs of the recipe shared by every run."""

    minutes: float = 20.0
    startup_s: float = 45.0  # per run: process start, model build, dataset index, first steps' compile
    seq_length: int = 4096
    evals: int = 10  # validation passes per run (points on each curve), evenly spaced
    eval_iters: int = 2  # batches per validation pass
    warmup_cap: float = 0.1
    decay_fraction: float = 0.2
    seed: int = 1234
    tokens: int | None = None  # fixed train tokens per size: skips the time budget (toy runs)
    global_batch_size: int | None = None  # replaces the size rule (toy runs)
    micro_batch_size: int | None = None
    lr: float | None = None  # replaces the size rule (toy runs); never per arm
    throughput: dict = field(default_factory=lambda: json.loads(json.dumps(ASSUMED_TOKENS_PER_S)))


@dataclass
class Run:
    size: str
    arm: str
    config: str  # launch/configs/<config>.yaml
    lr: float
    global_batch_size: int
    micro_batch_size: int
    seq_length: int
    train_iters: int
    train_tokens: int
    warmup_iters: int
    decay_iters: int
    eval_interval: int
    eval_iters: int
    seed: int
    tokens_per_s: float
    est_seconds: float


def tokens_per_s(budget: Budget, size: str, arm: str) -> float:
    try:
        return float(budget.throughput[size][arm])
    except KeyError:
        raise ValueError(f"no tokens/s for {size} {arm}: give it with --throughput") from None


def plan(sizes: list[str], arms: list[str], budget: Budget) -> list[Run]:
    runs = []
    share = budget.minutes * 60 / len(sizes)
    for size in sizes:
        micro = budget.micro_batch_size or MICRO_BATCH.get(size, 1)
        gbs = budget.global_batch_size or ladder_batch(size, budget.seq_length, micro)
        if gbs % micro:
            raise ValueError(f"global batch {gbs} is not a multiple of the micro-batch {micro}")
        step_tokens = gbs * budget.seq_length
        eval_tokens = budget.evals * budget.eval_iters * step_tokens
        rates = [tokens_per_s(budget, size, arm) for arm in arms]
        if budget.tokens is not None:
            tokens = budget.tokens
        else:
            tokens = (share - len(arms) * budget.startup_s) / sum(1 / r for r in rates) - eval_tokens / 3
        steps = max(1, math.floor(tokens / step_tokens))
        warmup = min(round(nominal_params(size) / step_tokens), math.floor(budget.warmup_cap * steps))
        decay = max(1, round(budget.decay_fraction * steps))
        interval = max(1, steps // max(1, budget.evals))
        lr = budget.lr if budget.lr is not None else ladder_lr(size, budget.seq_length)
        for arm, rate in zip(arms, rates):
            seconds = budget.startup_s + (steps * step_tokens + eval_tokens / 3) / rate
            runs.append(
                Run(size, arm, f"ladder_{size}_{arm}", lr, gbs, micro, budget.seq_length, steps,
                    steps * step_tokens, max(0, warmup), decay, interval, budget.eval_iters, budget.seed,
                    rate, seconds)
            )  # fmt: skip
    return runs


def warnings_for(runs: list[Run]) -> list[str]:
    """Things that make a plan unable to answer the question, said before any GPU time is spent."""
    out = []
    for run in runs:
        if run.train_iters < 50:
            out.append(f"{run.config}: only {run.train_iters} steps; curves will be noise (more minutes or sizes)")
        if run.warmup_iters + run.decay_iters >= run.train_iters:
            out.append(f"{run.config}: warmup + decay cover the whole run; no constant phase")
    return out


def validation_warning(runs: list[Run], valid_tokens: int) -> str | None:
    """A validation pass longer than the held-out split would repeat it (Megatron wraps around)."""
    need = max(r.eval_iters * r.global_batch_size * (r.seq_length + 1) for r in runs)
    if need > valid_tokens:
        return f"validation needs {need:,} tokens per pass but the held-out split has {valid_tokens:,}"
    return None


def load_throughput(path: str | Path | None) -> dict:
    """Measured tokens/s {size: {arm: value}} merged over the assumed table.

    A size that was not measured, for an arm that was at another size, gets the measured rate scaled
    by the nominal sizes (tokens/s ~ 1/N). That is conservative (small models use the GPU worse), so a
    plan built on it finishes early rather than overrunning its device call.
    """
    table = json.loads(json.dumps(ASSUMED_TOKENS_PER_S))
    if not path:
        return table
    raw = json.loads(Path(path).read_text())
    measured = {size: {a: float(v) for a, v in arms.items()} for size, arms in raw.get("tokens_per_s", raw).items()}
    for size in table.keys() | measured.keys():
        for arm in set().union(*(arms.keys() for arms in measured.values())):
            if arm in measured.get(size, {}):
                continue
            known = [s for s in measured if arm in measured[s]]
            nearest = min(known, key=lambda s: abs(math.log(nominal_params(s) / nominal_params(size))))
            rate = measured[nearest][arm] * nominal_params(nearest) / nominal_params(size)
            table.setdefault(size, {})[arm] = rate
    for size, arms in measured.items():
        table.setdefault(size, {}).update(arms)
    return table


def describe(runs: list[Run], budget: Budget) -> str:
    lines = [
        f"{'run':<28} {'LR':>9} {'batch':>10} {'steps':>6} {'warmup':>6} {'decay':>6} "
        f"{'tokens':>12} {'tok/s':>9} {'est. min':>8}"
    ]
    for r in runs:
        lines.append(
            f"{r.config:<28} {r.lr:>9.2e} {r.global_batch_size:>4}x{r.seq_length:<5} {r.train_iters:>6} "
            f"{r.warmup_iters:>6} {r.decay_iters:>6} {r.train_tokens:>12,} {r.tokens_per_s:>9,.0f} "
            f"{r.est_seconds / 60:>8.1f}"
        )
    total = sum(r.est_seconds for r in runs) / 60
    lines.append(f"total estimated: {total:.1f} min of {budget.minutes:g} (startup {budget.startup_s:g} s per run)")
    return "\n".join(lines)


def as_dicts(runs: list[Run]) -> list[dict]:
    return [asdict(r) for r in runs]
