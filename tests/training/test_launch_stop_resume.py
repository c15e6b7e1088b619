"""The README's single-node launch path, stopped the way a cluster stops it, then relaunched.

`make pretrain-7b NODES=1` (through launch/pretrain.sh and launch/torchrun.sh, tiny model overrides
on the CPU) gets SIGTERM on its whole process group after step 3, data workers included, as SLURM
preemption or `kill -- -PGID` would send it; the same command is run again. Driven by
bench/pretrain_resume.py, which is what runs on the GPU machines.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "--bf16", "false", "--tensor-model-parallel-size", "1", "--sequence-parallel", "false",
    "--seq-length", "64", "--micro-batch-size", "1", "--num-workers", "1", "--eod-token-id", "256",
    "--model-overrides.d_model", "32", "--model-overrides.n_heads", "2", "--model-overrides.n_kv_heads", "2",
    "--model-overrides.ffn_hidden", "64", "--model-overrides.vocab_size", "512",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("make", "setsid", "pkill")),
    reason="the launch scripts need make, setsid and pkill (util-linux, procps)",
)
def test_group_sigterm_saves_and_the_same_command_resumes(corpus, tmp_path):
    command = [
        sys.executable, "bench/pretrain_resume.py", "--arms", "olmo_hybrid_7b", "--gpus", "1", "--layers", "4",
        "--steps", "6", "--stop-at", "3", "--global-batch", "2", "--warmup", "1", "--warmup-steps", "1",
        "--data", corpus, "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out"), "--", *TINY,
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    row = json.loads((tmp_path / "out" / "pretrain_resume.json").read_text())["rows"][0]
    assert row["sigterm_after_step"] == 3
    assert row["saved_at_step"] in (3, 4)  # the signal lands during step 3's log line or step 4
    assert row["resumed_at_step"] == row["saved_at_step"] and row["finished"] and row["ok"]
    log = (tmp_path / "work" / "olmo_hybrid_7b.log").read_text()
    assert log.count("torchrun.sh: stopping") == 1  # one stop request, although make forwards the signal again
    assert f"SIGTERM: saved at step {row['saved_at_step']}" in log
    assert (tmp_path / "work" / "ckpt" / "olmo_hybrid_7b" / "latest").read_text().strip() == "iter_0000006"
    # the resumed run continued the loss curve rather than restarting from the initial loss
    curve = json.loads((tmp_path / "out" / "pretrain_resume_loss.json").read_text())["olmo_hybrid_7b"]
    assert sorted(int(s) for s in curve) == list(range(1, 7))
