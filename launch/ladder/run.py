"""Run the ladder: every size x arm with the project's trainer, same data, tokens, schedule and seed.

    python -m launch.ladder.run --sizes 60m 100m --arms transformer hybrid gdn --minutes 20
    python -m launch.ladder.run --sizes 60m 100m --minutes 20 --dry-run   # the plan, no training

1. builds the corpus (``corpus.py``) unless ``<out>/data/manifest.json`` exists;
2. plans the runs (``plan.py``): LR and batch from model size, tokens from the GPU minutes;
3. runs ``python -m megatron_hybrid.train --config ladder_<size>_<arm>`` for each, one process
   per run (fresh process groups and CUDA state), logs in ``<out>/logs``, TensorBoard in
   ``<out>/tensorboard/<size>_<arm>``; a finished run (``<run>.done``) is skipped on a rerun;
4. writes the report (``report.py``) to ``bench/results/ladder/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from launch.ladder import plan as planner

WSD_KEYS = ("lr_wsd_decay_iters", "lr_wsd_decay_style")


def trainer_supports_wsd() -> bool:
    """The trainer forwards Megatron's WSD arguments only if its config has these keys."""
    from megatron_hybrid.training.config import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return all(k in names for k in WSD_KEYS)


def schedule_overrides(run: planner.Run, wsd: bool) -> dict:
    """WSD (warmup, constant, linear decay to 0) when the trainer can; else linear decay to 0.

    The fallback is the same for every arm, so the comparison stays fair; it only spends fewer
    steps at the peak LR than the ladder recipe does.
    """
    common = {"lr": run.lr, "min_lr": 0.0, "lr_warmup_iters": run.warmup_iters, "lr_decay_iters": run.train_iters}
    if wsd:
        return common | {"lr_decay_style": "WSD", "lr_wsd_decay_iters": run.decay_iters, "lr_wsd_decay_style": "linear"}
    return common | {"lr_decay_style": "linear"}


def trainer_args(run: planner.Run, manifest: dict, out: Path, wsd: bool, gpu: bool, extra: dict) -> list[str]:
    """The command line of one run: the ladder config plus everything the plan decided."""
    vocab = 128 * -(-manifest["vocab_size"] // 128)  # padded like Megatron's vocab padding
    overrides = {
        "data_path": manifest["data_path"],
        "split": manifest["split"],
        "model_overrides.vocab_size": vocab,
        "eod_token_id": manifest["eos_id"],
        "seq_length": run.seq_length,
        "global_batch_size": run.global_batch_size,
        "micro_batch_size": run.micro_batch_size,
        "train_iters": run.train_iters,
        "train_tokens": "null",
        "seed": run.seed,
        "eval_interval": run.eval_interval,
        "eval_iters": run.eval_iters,
        "log_interval": max(1, min(10, run.train_iters // 20)),
        "tensorboard_dir": str(out / "tensorboard" / f"{run.size}_{run.arm}"),
        "data_cache_path": str(out / "data" / "cache"),
        "save": "null",  # curves are the product; checkpoints would only cost time and disk
        "bf16": gpu,
        "num_workers": 2 if gpu else 0,
        **schedule_overrides(run, wsd),
        **extra,
    }
    args = [sys.executable, "-m", "megatron_hybrid.train", "--config", run.config]
    for key, value in overrides.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def run_one(args: list[str], log: Path) -> float:
    """Run the trainer, its output to the console and ``log``; raise if it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        f.write(" ".join(args) + "\n")
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            sys.stdout.write(line)
            f.write(line)
        if proc.wait():
            raise RuntimeError(f"trainer failed (exit {proc.returncode}); see {log}")
    return time.perf_counter() - t0


def parse_set(items: list[str], sizes: list[str]) -> dict[str, dict]:
    """``KEY=VALUE`` (every run) or ``SIZE:KEY=VALUE`` (that size's runs) -> {size: {key: value}}."""
    out: dict[str, dict] = {size: {} for size in sizes}
    for item in items:
        target, value = item.partition("=")[::2]
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE or SIZE:KEY=VALUE")
        size, _, key = target.rpartition(":")
        if size and size not in out:
            raise ValueError(f"--set {item!r}: size {size!r} is not among {sizes}")
        for s in [size] if size else sizes:
            out[s][key] = value
    return out


def save_record(path: Path, record: dict) -> None:
    """Write plan.json, keeping the runs of earlier invocations on the same corpus.

    Sizes can then be run by separate commands (one size per 10-minute device call) and
    reported together; a rerun of a size replaces that size's entries.
    """
    merged = dict(record)
    if path.exists():
        previous = json.loads(path.read_text())
        if previous.get("manifest", {}).get("split") == record["manifest"]["split"]:
            runs = {f"{r['size']}_{r['arm']}": r for r in previous.get("runs", [])}
            runs |= {f"{r['size']}_{r['arm']}": r for r in record["runs"]}
            merged["runs"] = list(runs.values())
            merged["model_overrides"] = previous.get("model_overrides", {}) | record["model_overrides"]
    path.write_text(json.dumps(merged, indent=2))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=["60m", "100m"], help="ladder sizes (launch/configs/ladder_*)")
    p.add_argument("--arms", nargs="+", default=["transformer", "hybrid", "gdn"], help="ladder arms")
    p.add_argument("--minutes", type=float, default=20.0, help="GPU minutes for all runs together")
    p.add_argument("--out", default="runs/ladder", help="data, logs and TensorBoard folders go here")
    p.add_argument("--results", default="bench/results/ladder", help="where report.py writes JSON, PNG, Markdown")
    p.add_argument("--throughput", default=None, help="measured tokens/s JSON (report.py's throughput.json)")
    p.add_argument("--startup-s", type=float, default=45.0, help="assumed seconds per run not spent training")
    p.add_argument("--seq-length", type=int, default=4096, help="tokens per sequence (_ladder.yaml: 4096)")
    p.add_argument("--evals", type=int, default=10, help="validation passes per run (points per curve)")
    p.add_argument("--eval-iters", type=int, default=2, help="batches per validation pass")
    p.add_argument("--warmup-cap", type=float, default=0.1, help="warmup at most this fraction of the steps")
    p.add_argument("--decay-fraction", type=float, default=0.2, help="WSD: linear decay over this last fraction")
    p.add_argument("--seed", type=int, default=1234, help="init and data-order seed, the same for every run")
    p.add_argument("--tokens", type=float, default=None, help="fixed train tokens per size (skips the time budget)")
    p.add_argument("--global-batch-size", type=int, default=None, help="sequences per step (default: size rule)")
    p.add_argument("--micro-batch-size", type=int, default=None, help="sequences per micro-batch (default: table)")
    p.add_argument("--lr", type=float, default=None, help="peak LR for every run (default: size rule)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        help="trainer override KEY=VALUE for every run, or SIZE:KEY=VALUE for one size's runs (all arms alike)",
    )
    p.add_argument("--max-bytes", type=float, default=400e6, help="corpus: cap on train text bytes")
    p.add_argument("--min-valid-bytes", type=float, default=2e6, help="corpus: held-out text at least (packages)")
    p.add_argument("--corpus-roots", nargs="*", default=None, help="corpus: site-packages folders (default: ours)")
    p.add_argument("--tokenizer", default="bpe", help="corpus: 'bpe' (trained here), 'byte' or a tokenizer path")
    p.add_argument("--vocab-size", type=int, default=16384, help="corpus: BPE vocabulary")
    p.add_argument("--bpe-sample-bytes", type=float, default=50e6, help="corpus: text the BPE is trained on")
    p.add_argument("--workers", type=int, default=8, help="corpus: tokenizer processes")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit (no corpus, no training)")
    p.add_argument("--force", action="store_true", help="rerun runs that already finished")
    p.add_argument("--no-report", action="store_true", help="skip report.py at the end")
    return p


def budget_from(args) -> planner.Budget:
    return planner.Budget(
        minutes=args.minutes,
        startup_s=args.startup_s,
        seq_length=args.seq_length,
        evals=args.evals,
        eval_iters=args.eval_iters,
        warmup_cap=args.warmup_cap,
        decay_fraction=args.decay_fraction,
        seed=args.seed,
        tokens=int(args.tokens) if args.tokens else None,
        global_batch_size=args.global_batch_size,
        micro_batch_size=args.micro_batch_size,
        lr=args.lr,
        throughput=planner.load_throughput(args.throughput),
    )


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    budget = budget_from(args)
    runs = planner.plan(args.sizes, args.arms, budget)
    data_dir = out / "data"
    manifest = json.loads((data_dir / "manifest.json").read_text()) if (data_dir / "manifest.json").exists() else None
    wsd = trainer_supports_wsd()
    print(planner.describe(runs, budget))
    if not wsd:
        print(f"note: the trainer config lacks {WSD_KEYS}; using linear decay to 0 after warmup instead of WSD")
    warnings = planner.warnings_for(runs)
    if manifest:
        warnings.append(planner.validation_warning(runs, manifest["tokens"]["valid"]))
    for w in filter(None, warnings):
        print("warning:", w)
    if args.dry_run:
        return {"runs": planner.as_dicts(runs), "wsd": wsd}

    if manifest is None:
        from launch.ladder import corpus

        manifest = corpus.build(
            data_dir,
            [Path(r) for r in args.corpus_roots] if args.corpus_roots else None,
            max_bytes=int(args.max_bytes),
            min_valid_bytes=int(args.min_valid_bytes),
            tokenizer=args.tokenizer,
            vocab_size=args.vocab_size,
            bpe_sample_bytes=int(args.bpe_sample_bytes),
            workers=args.workers,
        )
        if w := planner.validation_warning(runs, manifest["tokens"]["valid"]):
            print("warning:", w)
    longest = max(r.train_tokens for r in runs)
    if longest > manifest["tokens"]["train"]:
        print(f"warning: runs of {longest:,} tokens repeat the {manifest['tokens']['train']:,}-token train split")

    import torch

    gpu = torch.cuda.is_available()
    extra = parse_set(args.set, args.sizes)
    record = {"runs": planner.as_dicts(runs), "budget": dataclasses.asdict(budget), "manifest": manifest, "wsd": wsd}
    record["vocab_size"] = 128 * -(-manifest["vocab_size"] // 128)
    record["model_overrides"] = {
        size: {k.split(".", 1)[1]: yaml.safe_load(v) for k, v in kv.items() if k.startswith("model_overrides.")}
        for size, kv in extra.items()
    }
    for run, entry in zip(runs, record["runs"]):
        name = f"{run.size}_{run.arm}"
        done = out / "logs" / f"{name}.done"
        previous = json.loads(done.read_text()) if done.exists() else None
        identity = {"run": dict(entry), "set": extra[run.size], "split": manifest["split"]}
        if previous and {k: previous.get(k) for k in identity} == identity and not args.force:
            entry["wall_s"] = previous["wall_s"]
            print(f"== {name}: finished earlier, skipped (--force reruns it)")
            continue
        shutil.rmtree(out / "tensorboard" / name, ignore_errors=True)  # stale events would mix into the curve
        print(f"\n== {name}: {run.train_iters} steps, {run.train_tokens:,} tokens, LR {run.lr:.2e}")
        wall = run_one(trainer_args(run, manifest, out, wsd, gpu, extra[run.size]), out / "logs" / f"{name}.log")
        done.write_text(json.dumps(identity | {"wall_s": wall}))  # what it ran: a changed plan reruns it
        entry["wall_s"] = wall
        save_record(out / "plan.json", record)
    save_record(out / "plan.json", record)
    if not args.no_report:
        from launch.ladder import report

        report.main([str(out), "--out", args.results])
    return record


if __name__ == "__main__":
    main()
