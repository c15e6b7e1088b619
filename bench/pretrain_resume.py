"""The README's 7B launch path, interrupted and resumed: `make pretrain-7b` / `make pretrain-7b-olmo3`.

For each arm: launch the make target exactly as a user does (NODES=1, torchrun on every local GPU),
send SIGTERM to the whole job (as SLURM does on preemption) once the log shows step ``--stop-at``,
check that it saved and exited cleanly, launch the same command again, and check that it resumed
from that step and ran to the end. Reports tokens/s per GPU, TFLOP/s, MFU and peak memory (medians
of the trainer's own TensorBoard scalars, warm-up steps dropped) and the loss around the restart:

    python bench/pretrain_resume.py                               # full 7B arms, all local GPUs
    python bench/pretrain_resume.py --layers 4 --global-batch 8   # reduced depth on 2 GPUs
    python bench/pretrain_resume.py ... -- --micro-batch-size 2     # after --: trainer overrides

Data: ``--data`` (a dataset prefix), else a small corpus of this interpreter's site-packages built
by ``launch.ladder.corpus`` (real text, BPE ids below the 7B vocabulary). Results go to
``bench/results/<name>.{json,md}`` and the loss curves to ``<name>_loss.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import report  # noqa: E402
from model_step import perf_medians  # noqa: E402

from megatron_hybrid.compare import read_curve  # noqa: E402

TARGETS = {"olmo_hybrid_7b": "pretrain-7b", "olmo3_7b": "pretrain-7b-olmo3"}
STEP_LINE = re.compile(r"^step\s+(\d+)/(\d+)")


def corpus(out: Path) -> tuple[str, int]:
    """A small real-text dataset (a flat uint32 .npy, end-of-document id), built once.

    The corpus is stored as uint16, which the trainer rightly refuses for the 7B's 100,352-entry
    vocabulary; its ids (< 16,384) are rewritten as the uint32 .npy token file OLMo uses.
    """
    import numpy as np

    manifest = out / "manifest.json"
    if not manifest.exists():
        from launch.ladder import corpus as ladder_corpus

        ladder_corpus.build(out, None, max_bytes=int(30e6), min_valid_bytes=int(1e6), workers=8)
    m = json.loads(manifest.read_text())
    flat = out / "tokens_uint32.npy"
    if not flat.exists():
        np.save(flat, np.fromfile(m["data_path"] + ".bin", dtype=np.uint16).astype(np.uint32))
    return str(flat), m["eos_id"]


def launch(target: str, env: dict, log: Path, stop_at: int | None) -> dict:
    """Run ``make <target>``; with ``stop_at``, SIGTERM the job's process group once that step is logged."""
    t0 = time.perf_counter()
    signalled = None
    with open(log, "a") as f:
        proc = subprocess.Popen(
            ["make", target, "NODES=1"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip
        for line in proc.stdout:
            f.write(line)
            sys.stdout.write(line)
            m = STEP_LINE.match(line)
            if stop_at is not None and signalled is None and m and int(m.group(1)) >= stop_at:
                signalled = int(m.group(1))
                os.killpg(proc.pid, signal.SIGTERM)  # launcher and ranks alike, like `scancel --signal=TERM`
        rc = proc.wait()
    text = log.read_text()
    return {"rc": rc, "wall_s": time.perf_counter() - t0, "signalled_after_step": signalled, "log": text}


def last_match(pattern: str, text: str) -> re.Match | None:
    found = list(re.finditer(pattern, text))
    return found[-1] if found else None


def run_arm(arm: str, args, data: str, eod: int, work: Path) -> tuple[dict, dict]:
    ckpt, tb = work / "ckpt", work / "tb"
    shutil.rmtree(ckpt / arm, ignore_errors=True)
    shutil.rmtree(tb / arm, ignore_errors=True)
    overrides = [
        "--train-tokens", "null", "--train-iters", str(args.steps), "--global-batch-size", str(args.global_batch),
        "--lr-warmup-iters", str(args.warmup), "--log-interval", "1", "--eval-interval", "0",
        "--save-interval", str(10**9), "--eod-token-id", str(eod), "--split", "100,0,0",
        *(["--data-format", "npy", "--data-dtype", "uint32"] if data.endswith(".npy") else []),
    ]  # fmt: skip
    if args.layers:
        overrides += ["--model-overrides.n_layers", str(args.layers)]
    overrides += args.trainer_args
    env = os.environ | {"DATA": data, "CKPT_DIR": str(ckpt), "TB_DIR": str(tb), "ARGS": " ".join(overrides)}
    log = work / f"{arm}.log"
    log.unlink(missing_ok=True)
    first = launch(TARGETS[arm], env, log, args.stop_at)
    if first["signalled_after_step"] is None:
        raise SystemExit(f"{arm}: the first launch ended (exit {first['rc']}) before step {args.stop_at}; see {log}")
    saved = last_match(r"SIGTERM: saved at step (\d+)", first["log"])
    second = launch(TARGETS[arm], env, log, None)
    resumed = last_match(r"resumed from \S+ at step (\d+)", second["log"][len(first["log"]) :])
    finished = last_match(rf"step\s+{args.steps}/{args.steps}", second["log"])

    steps, losses = read_curve(tb / arm, "train/loss")
    curve = {int(s): float(v) for s, v in zip(steps, losses)}
    row = {
        "arm": arm,
        "gpus": args.gpus,
        "layers": args.layers or "all",
        "layout": (last_match(r"training .*?: (TP=.*)", first["log"]) or [None, ""])[1],
        "first_rc": first["rc"],
        "sigterm_after_step": first["signalled_after_step"],
        "saved_at_step": int(saved.group(1)) if saved else None,
        "resumed_at_step": int(resumed.group(1)) if resumed else None,
        "second_rc": second["rc"],
        "finished": bool(finished),
    }
    if row["saved_at_step"]:
        s = row["saved_at_step"]
        row["loss_before_stop"] = curve.get(s)
        row["loss_after_resume"] = curve.get(s + 1)
    restart_step = (row["resumed_at_step"] or -1) + 1  # its timing includes the reload
    row |= perf_medians(tb / arm, args.gpus, args.warmup_steps, skip_steps=(restart_step,))
    # make itself also gets the SIGTERM and reports it (exit 2); what counts is the trainer's own save.
    row["ok"] = bool(
        row["saved_at_step"] and row["resumed_at_step"] == row["saved_at_step"]
        and row["second_rc"] == 0 and row["finished"]
    )  # fmt: skip
    return row, curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arms", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--gpus", type=int, default=None, help="GPUs torchrun uses (default: all visible)")
    parser.add_argument("--layers", type=int, default=None, help="reduced depth (default: the preset's 32)")
    parser.add_argument("--steps", type=int, default=50, help="optimizer steps per arm")
    parser.add_argument("--stop-at", type=int, default=25, help="SIGTERM once this step is logged")
    parser.add_argument("--global-batch", type=int, default=512, help="sequences of 8192 per step")
    parser.add_argument("--warmup", type=int, default=10, help="LR warm-up steps (the recipe's 2000 > a short run)")
    parser.add_argument("--warmup-steps", type=int, default=3, help="first steps left out of the medians")
    parser.add_argument("--data", default=None, help="dataset prefix (default: a small site-packages corpus)")
    parser.add_argument("--work", default="runs/pretrain_resume", help="checkpoints, logs, TensorBoard")
    parser.add_argument("--out", default=None, help="results folder (default bench/results)")
    parser.add_argument("--name", default="pretrain_resume", help="results file name")
    parser.add_argument("trainer_args", nargs=argparse.REMAINDER, help="after --: more trainer overrides")
    args = parser.parse_args()
    args.trainer_args = [a for a in args.trainer_args if a != "--"]
    if args.gpus is None:
        import torch

        args.gpus = max(1, torch.cuda.device_count())
    work = (ROOT / args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data, eod = (args.data, 100257) if args.data else corpus(work / "data")
    rows, curves = [], {}
    for arm in args.arms:
        row, curves[arm] = run_arm(arm, args, data, eod, work)
        print(row, flush=True)
        rows.append(row)
    columns = ["arm", "gpus", "layers", "layout", "sigterm_after_step", "saved_at_step", "resumed_at_step",
               "loss_before_stop", "loss_after_resume", "finished", "tokens_per_s_per_gpu", "tflops_per_gpu",
               "mfu_percent", "peak_memory_gib", "ok"]  # fmt: skip
    notes = (
        f"`make {TARGETS[args.arms[0]]} NODES=1` with ARGS overriding only: {args.steps} steps, global batch "
        f"{args.global_batch} x 8192, LR warm-up {args.warmup} steps, logging every step, no periodic save"
        + (f", {args.layers} layers" if args.layers else "")
        + f". SIGTERM to the job's process group after step {args.stop_at}, then the same command again. "
        "Medians over steps after the first few and after the restart step."
    )
    path = report.write(args.name, rows, columns, notes, Path(args.out) if args.out else None)
    (path.parent / f"{args.name}_loss.json").write_text(json.dumps(curves, indent=1))
    print(path.read_text())
    if not all(r["ok"] for r in rows):
        raise SystemExit("an arm did not stop, save, resume and finish as expected (see the table)")


if __name__ == "__main__":
    main()
