"""The benchmarks' environment record on a machine without a GPU."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import report  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU behaviour")
def test_gpu_state_and_warm_up_are_no_ops_without_a_gpu():
    assert report.gpu_state() == ""
    assert report.warm_up_gpu(5.0) == 0.0  # returns at once: nothing to warm
    env = report.environment()
    assert "gpu_state" not in env and env["card"] == "cpu"
