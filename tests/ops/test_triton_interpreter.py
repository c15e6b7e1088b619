"""Runs the Triton-kernel tests of ``interpret/`` on the CPU under TRITON_INTERPRET=1, in a child process (the
variable must be set before triton is imported, which this process may already have done)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="interpret/ is collected directly")
def test_triton_kernels_under_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "pytest", os.path.join(HERE, "interpret"), "-q", "-p", "no:cacheprovider"]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, f"interpreter tests failed:\n{res.stdout[-6000:]}\n{res.stderr[-3000:]}"
