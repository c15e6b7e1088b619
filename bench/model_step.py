"""Model-level speed: the trainer's real step (optimizer included) for the hybrid and the baseline.

Each arm runs ``python -m megatron_hybrid.train`` under torchrun on this machine's GPUs, on random
tokens (a flat uint32 .npy, so no data set is needed), for a few steps; the step-time scalars the
trainer writes to TensorBoard (tokens/s, TFLOP/s per GPU, MFU against 989 TFLOP/s, peak memory)
are read back, warm-up steps dropped, and the medians reported for both arms of the same run:

    python bench/model_step.py --gpus 4                          # full 32-layer 7B arms, trainer's layout
    python bench/model_step.py --gpus 1 --layers 8                # same widths, reduced depth, one GPU
    python bench/model_step.py --gpus 4 -- --tensor-model-parallel-size 4 --recompute-granularity full
    python bench/model_step.py --gpus 4 --repeat 2 --arms olmo_hybrid_7b \
        "olmo_hybrid_7b:--async-tensor-parallel true" olmo3_7b        # A/B/C twice, alternating, one call
    python bench/model_step.py --gpus 4 --arms olmo3_7b "olmo3_7b:MEGATRON_HYBRID_FUSED_ROPE=0"   # env per arm

Arguments after ``--`` go to the trainer unchanged (its flag names). Results:
``bench/results/model_step.{json,md}`` (``--name`` changes the file name). ``--profile-step N`` also profiles
step N of each arm on rank 0 (``megatron_hybrid/training/profiler.py``: GPU time by kernel category, exposed
communication, idle time) into ``bench/results/profile/<name>_<arm>/``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import report  # noqa: E402

from megatron_hybrid.compare import read_curve  # noqa: E402

TAGS = {
    "tokens_per_s": "perf/tokens_per_s",
    "tflops_per_gpu": "perf/tflops_per_gpu",
    "mfu": "perf/mfu",
    "peak_memory_gib": "perf/peak_memory_gib",
}


def perf_medians(tb: Path, gpus: int, after_step: int, skip_steps: tuple[int, ...] = ()) -> dict:
    """Medians of the trainer's step-timing scalars over steps > ``after_step`` (warm-up left out) and not in
    ``skip_steps`` (e.g. the first step after a restart): tokens/s per GPU, TFLOP/s per GPU, MFU %, peak GiB."""
    row = {}
    for name, tag in TAGS.items():
        steps, values = read_curve(tb, tag)
        kept = [v for s, v in zip(steps, values) if s > after_step and s not in skip_steps]
        row[name] = float(statistics.median(kept)) if kept else float("nan")
        if name == "tokens_per_s" and kept:  # how much the kept steps differ: a ratio below this is not a result
            row["step_spread_percent"] = 100 * (max(kept) - min(kept)) / row[name]
    row["tokens_per_s_per_gpu"] = row.pop("tokens_per_s") / gpus
    row["mfu_percent"] = 100 * row.pop("mfu")
    return row


def random_tokens(path: Path, count: int, vocab: int, seed: int = 0) -> Path:
    """A flat uint32 token file (OLMo's .npy format) of uniform random ids below ``vocab``."""
    tokens = np.random.default_rng(seed).integers(0, vocab, size=count, dtype=np.uint32)
    np.save(path, tokens)
    return path


ENV_WORD = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def parse_arm(spec: str) -> tuple[str, list[str], dict[str, str]]:
    """``config`` or ``config:words``, where the words are trainer arguments and ``NAME=value`` environment
    settings for this arm only (e.g. ``olmo3_7b:MEGATRON_HYBRID_FUSED_ROPE=0 --fused-cross-entropy false``) ->
    (config, extra trainer args, extra environment)."""
    config, _, extra = spec.partition(":")
    if not config:
        raise ValueError(f"arm {spec!r}: give a trainer config name, optionally ':' and trainer arguments")
    words = shlex.split(extra)
    env = dict(w.split("=", 1) for w in words if ENV_WORD.match(w))
    return config, [w for w in words if not ENV_WORD.match(w)], env


def add_ratios(rows: list[dict], specs: list[str]) -> None:
    """``vs_last_arm``: each row's tokens/s over that of the last arm spec in the same round (hybrid / Olmo 3 for
    the default arms); with several rounds, one ``median`` row per arm spec over the rounds."""
    last = {r["round"]: r["tokens_per_s_per_gpu"] for r in rows if r["arm"] == specs[-1] and r["round"] != "median"}
    for r in rows:
        base = last.get(r["round"])
        if len(specs) > 1 and base and base > 0 and r["tokens_per_s_per_gpu"] > 0:  # nan compares False
            r["vs_last_arm"] = r["tokens_per_s_per_gpu"] / base
    rounds = {r["round"] for r in rows}
    if len(rounds) < 2:
        return
    for spec in specs:
        mine = [r for r in rows if r["arm"] == spec and r["tokens_per_s_per_gpu"] > 0]
        if not mine:
            continue
        med = {"arm": spec, "round": "median", "layers": mine[0]["layers"], "gpus": mine[0]["gpus"]}
        med["layout"] = mine[0].get("layout", "")
        for key in ("tokens_per_s_per_gpu", "tflops_per_gpu", "mfu_percent", "peak_memory_gib", "vs_last_arm"):
            values = [r[key] for r in mine if key in r]
            if values:
                med[key] = float(statistics.median(values))
        rows.append(med)


def run_arm(spec: str, args, data: Path, workdir: Path, round_: int = 1) -> dict:
    arm, extra, arm_env = parse_arm(spec)
    tb = workdir / f"tb_{round_}_{args.arms.index(spec)}"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.gpus}",
        "-m", "megatron_hybrid.train", "--config", arm,
        "--data-path", str(data), "--data-format", "npy", "--data-dtype", "uint32",
        "--seq-length", str(args.seq), "--micro-batch-size", str(args.micro_batch),
        "--global-batch-size", str(args.global_batch), "--train-iters", str(args.steps),
        "--log-interval", "1", "--eval-interval", "0", "--save-interval", str(10**9),
        "--split", "100,0,0", "--tensorboard-dir", str(tb),
    ]  # fmt: skip
    if args.layers:
        command += ["--model-overrides.n_layers", str(args.layers)]
    if args.profile_step is not None:
        variant = f"_arm{args.arms.index(spec)}" if extra or arm_env else ""  # variants of one config apart
        prof = ROOT / "bench" / "results" / "profile" / f"{args.name}_{arm}{variant}_r{round_}"
        command += ["--profile-step-start", str(args.profile_step), "--profile-dir", str(prof)]
    if args.gpus == 1 and not any(a.startswith("--tensor-model-parallel-size") for a in args.trainer_args):
        # the 7B configs' layout is TP=2 with sequence parallelism: one GPU runs TP=1 without it
        command += ["--tensor-model-parallel-size", "1", "--sequence-parallel", "false"]
    command += args.trainer_args + extra
    print("+", *(f"{k}={v}" for k, v in arm_env.items()), " ".join(command), flush=True)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # keep site dirs already set
    env = os.environ | arm_env | {"PYTHONPATH": path}
    done = subprocess.run(command, cwd=ROOT, text=True, capture_output=True, env=env)
    layout = next((line for line in done.stdout.splitlines() if line.startswith("training ")), "")
    row = {"arm": spec, "round": round_, "layers": args.layers or "all", "gpus": args.gpus}
    row["layout"] = layout.split(": ", 1)[-1]
    if done.returncode:  # recorded, so the other arm still runs; the report says which arm failed and why
        print(f"{arm} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}", flush=True)
        error = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return row | {"error": error[:300], "tokens_per_s_per_gpu": float("nan")}
    skip = (args.profile_step,) if args.profile_step is not None else ()
    row |= perf_medians(tb, args.gpus, args.warmup, skip_steps=skip)
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--arms",
        nargs="+",
        default=["olmo_hybrid_7b", "olmo3_7b"],
        help="trainer configs to time, each optionally 'config:trainer args and NAME=value settings' (a variant)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds over all arms, alternating (A B A B ...)")
    parser.add_argument("--gpus", type=int, default=1, help="processes (GPUs) per arm")
    parser.add_argument("--layers", type=int, default=None, help="reduced depth (default: the preset's)")
    parser.add_argument("--seq", type=int, default=8192, help="sequence length")
    parser.add_argument("--micro-batch", type=int, default=1, help="micro-batch size")
    parser.add_argument("--global-batch", type=int, default=None, help="default: 4 micro-batches per GPU")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per arm")
    parser.add_argument("--warmup", type=int, default=3, help="first steps left out of the medians")
    parser.add_argument("--vocab", type=int, default=100_278, help="token ids are drawn below this")
    parser.add_argument("--name", default="model_step", help="results file name")
    parser.add_argument(
        "--profile-step",
        type=int,
        default=None,
        help="profile this step on rank 0 (left out of the medians); tables in bench/results/profile/<name>_<arm>/",
    )
    parser.add_argument("trainer_args", nargs=argparse.REMAINDER, help="after --: trainer overrides")
    args = parser.parse_args()
    args.trainer_args = [a for a in args.trainer_args if a != "--"]
    args.global_batch = args.global_batch or 4 * args.gpus * args.micro_batch
    with tempfile.TemporaryDirectory(prefix="model_step_") as tmp:
        workdir = Path(tmp)
        count = (args.steps + 2) * args.global_batch * (args.seq + 1)
        data = random_tokens(workdir / "tokens.npy", count, args.vocab)
        rows = []
        for round_ in range(1, args.repeat + 1):
            for spec in args.arms:  # the report is rewritten after each arm: a time limit keeps what finished
                rows.append(run_arm(spec, args, data, workdir, round_))
                path = write_report(args, rows)
    print(path.read_text())


def write_report(args, rows: list[dict]) -> Path:
    rows = [dict(r) for r in rows]
    add_ratios(rows, args.arms)
    columns = ["arm", "round", "layers", "gpus", "layout", "tokens_per_s_per_gpu", "tflops_per_gpu", "mfu_percent"]
    columns += ["peak_memory_gib", "step_spread_percent", "vs_last_arm"]
    columns += ["error"] if any("error" in r for r in rows) else []
    notes = (
        f"Median over steps {args.warmup + 1}..{args.steps} of the trainer's own step timing (optimizer included), "
        f"random tokens, sequence {args.seq}, global batch {args.global_batch}. `step_spread_percent`: (max - min) / "
        "median of those steps' tokens/s. `vs_last_arm`: tokens/s over the last arm's in the same round. Arms ran "
        "one after another on the same GPUs, rounds alternating."
    )
    return report.write(args.name, rows, columns, notes)


if __name__ == "__main__":
    main()
