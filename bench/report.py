"""Shared pieces of the benchmarks: the environment record and the JSON + Markdown writer."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def git_commit() -> str:
    """HEAD (+dirty), or ``MEGATRON_HYBRID_COMMIT`` when set: the device machine gets a copy of the working tree whose
    git metadata can be stale, so the caller passes the commit it sent."""
    if os.environ.get("MEGATRON_HYBRID_COMMIT"):
        return os.environ["MEGATRON_HYBRID_COMMIT"]
    try:
        root = Path(__file__).resolve().parent.parent
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True).stdout
        return commit.stdout.strip() + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git checkout)"


def gpu_state() -> str:
    """The current GPU's SM clock (and its maximum), power state, power draw and temperature, from nvidia-smi: a
    first measurement on a freshly started machine has run slow before, and this says whether the card was clocked
    down. Empty without a GPU or nvidia-smi."""
    if not torch.cuda.is_available():
        return ""
    fields = "pstate,clocks.sm,clocks.max.sm,power.draw,temperature.gpu"
    # nvidia-smi numbers GPUs as the machine does: map the current device through CUDA_VISIBLE_DEVICES
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    current = torch.cuda.current_device()
    index = visible[current].strip() if current < len(visible) else str(current)
    try:
        done = subprocess.run(
            ["nvidia-smi", "-i", index, f"--query-gpu={fields}", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{fields}: {done.stdout.strip()}"


def warm_up_gpu(seconds: float = 3.0) -> float:
    """Keep the GPU busy with bf16 GEMMs for ``seconds`` before anything is timed, so the first measurement of a
    run does not pay for clocks ramping up; returns the seconds spent (0 without a GPU)."""
    if not torch.cuda.is_available():
        return 0.0
    import time

    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(20):
            a @ a
        torch.cuda.synchronize()
    return time.perf_counter() - start


def environment() -> dict:
    import triton

    env = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "card": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": platform.python_version(),
        "commit": git_commit(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        # the project's knobs in force (kernel modes, autotuning, the fused mixer), so a result says what ran
        "knobs": " ".join(
            f"{k}={v}"
            for k, v in sorted(os.environ.items())
            if k.startswith("MEGATRON_HYBRID_") and k != "MEGATRON_HYBRID_COMMIT"
        ),
    }
    if torch.cuda.is_available():
        env["gpu_state"] = gpu_state()
    try:
        import megatron.core

        env["megatron_core"] = megatron.core.__version__
    except ImportError:
        pass
    try:
        import fla

        env["fla"] = fla.__version__
    except ImportError:
        pass
    return env


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for col in columns:
            value = row.get(col, "")
            cells.append(f"{value:.3g}" if isinstance(value, float) else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write(name: str, rows: list[dict], columns: list[str], notes: str = "", out_dir: Path | None = None) -> Path:
    """``<name>.json`` (environment + rows) and ``<name>.md`` (environment + table + notes)."""
    out = Path(out_dir or RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    (out / f"{name}.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=2))
    header = "\n".join(f"- {k}: `{v}`" for k, v in env.items())
    text = f"# {name}\n\n{header}\n\n{markdown_table(rows, columns)}\n"
    if notes:
        text += f"\n{notes.strip()}\n"
    (out / f"{name}.md").write_text(text)
    return out / f"{name}.md"
