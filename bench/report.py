"""Shared pieces of the benchmarks: the environment record and the JSON + Markdown writer."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
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


def _nvidia_smi(*args: str) -> str:
    try:
        done = subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout


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
    state = _nvidia_smi("-i", index, f"--query-gpu={fields}", "--format=csv,noheader").strip()
    return f"{fields}: {state}" if state else ""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_GPU = re.compile(r"GPU\d+$")


def gpu_links(topo: str) -> str:
    """The link between each pair of GPUs in ``nvidia-smi topo -m`` output (NV<n>: NVLink with n links; PIX, PXB,
    PHB, NODE, SYS: PCIe paths, the last through the CPUs' interconnect), as "all 6 GPU pairs: NV18" when one kind
    links them all, else pair by pair. Empty when the text holds no GPU matrix."""
    rows = [[cell.strip() for cell in _ANSI.sub("", line).split("\t")] for line in topo.splitlines()]
    header = next((row for row in rows if row and not row[0] and any(_GPU.match(c) for c in row)), None)
    if header is None:
        return ""
    columns = {i: c for i, c in enumerate(header) if _GPU.match(c)}
    pairs = {}
    for row in rows:
        if not row or not _GPU.match(row[0]):
            continue
        for i, other in columns.items():
            if i < len(row) and int(row[0][3:]) < int(other[3:]):
                pairs[f"{row[0]}-{other}"] = row[i]
    kinds = set(pairs.values())
    if len(kinds) == 1:
        return f"all {len(pairs)} GPU pairs: {kinds.pop()}"
    return ", ".join(f"{pair} {kind}" for pair, kind in pairs.items())


def gpu_host() -> str:
    """Each GPU's enforced power limit and how the GPUs are linked: what sets a run's speed beyond the card's name
    (session 15's 4-GPU step ran ~27% slower for both models than session 13's on the same card type, and the record
    could not say why). Empty without a GPU or nvidia-smi."""
    if not torch.cuda.is_available():
        return ""
    parts = []
    limits = [x.strip() for x in _nvidia_smi("--query-gpu=power.limit", "--format=csv,noheader").splitlines()]
    if any(limits):
        parts.append("power limit " + ", ".join(f"{v} x{limits.count(v)}" for v in dict.fromkeys(limits) if v))
    links = gpu_links(_nvidia_smi("topo", "-m"))
    if links:
        parts.append(links)
    return "; ".join(parts)


def host_cpu() -> str:
    """The host's CPU model and logical CPU count: a host-bound result (the launches outlasting the GPU's work)
    depends on it."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} logical CPUs)"


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


def cuda_graph_ms(fn, grads=None) -> tuple[float | None, str | None]:
    """(median ms, None) of ``fn`` replayed from a CUDA graph (triton's do_bench_cudagraph: calls captured back to
    back, no L2 flush between them): the GPU's own time, without the host's launches, which bound small shapes on
    slow hosts. (None, why) where ``fn`` cannot be captured (e.g. a host sync inside it)."""
    from triton.testing import do_bench_cudagraph

    try:
        return do_bench_cudagraph(fn, rep=200, grad_to_none=grads, return_mode="median"), None
    except RuntimeError as error:
        torch.cuda.synchronize()
        return None, f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"


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
    env["host_cpu"] = host_cpu()
    if torch.cuda.is_available():
        env["gpu_state"] = gpu_state()
        env["gpu_host"] = gpu_host()
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


def markdown_table(rows: list[dict], columns: list[str], float_format: str = ".3g") -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for col in columns:
            value = row.get(col, "")
            cells.append(
                format(value, float_format) if isinstance(value, float) else "-" if value is None else str(value)
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write(
    name: str,
    rows: list[dict],
    columns: list[str],
    notes: str = "",
    out_dir: Path | None = None,
    float_format: str = ".3g",
) -> Path:
    """``<name>.json`` (environment + rows) and ``<name>.md`` (environment + table + notes; floats as
    ``float_format``)."""
    out = Path(out_dir or RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    (out / f"{name}.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=2))
    header = "\n".join(f"- {k}: `{v}`" for k, v in env.items())
    text = f"# {name}\n\n{header}\n\n{markdown_table(rows, columns, float_format)}\n"
    if notes:
        text += f"\n{notes.strip()}\n"
    (out / f"{name}.md").write_text(text)
    return out / f"{name}.md"
