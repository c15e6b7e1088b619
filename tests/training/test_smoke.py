"""`make smoke` itself, shortened: corpus from the stdlib, both tiny arms, TensorBoard, checkpoints, PNG."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_smoke_entry_point(tmp_path):
    out = tmp_path / "smoke"
    proc = subprocess.run(
        [sys.executable, "-m", "megatron_hybrid.smoke", "--out", str(out), "--steps", "6", "--documents", "60"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "compare.png").stat().st_size > 10_000
    for arm in ("olmo_hybrid", "olmo3"):
        assert (out / "checkpoints" / arm / "latest").read_text().strip() == "iter_0000006"
        assert list((out / "tensorboard" / arm).glob("events.out.tfevents.*"))
    assert "fewer tokens" in proc.stdout or "never reaches" in proc.stdout
    assert "comparison:" in proc.stdout
