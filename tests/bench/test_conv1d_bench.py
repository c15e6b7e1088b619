"""bench/conv1d.py on the CPU: its variant list, command line and error measure (the timing itself needs a GPU)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_conv1d", ROOT / "bench" / "conv1d.py")
bench_conv1d = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_conv1d)


def test_variants_cover_every_family_and_are_distinct():
    from megatron_hybrid.ops import conv1d

    cfgs = bench_conv1d.configs()
    names = [c.name for c in cfgs]
    assert len(set(names)) == len(names)
    assert {c.variant for c in cfgs} == set(conv1d.BWD_VARIANTS)
    assert {c.dpre_dtype for c in cfgs if c.variant != "fused"} == set(conv1d.DPRE_DTYPES)
    assert {1, 4, 8} <= {c.rows_per_program for c in cfgs}
    assert conv1d._BWD_CONFIG.name in names  # the module default is among those timed


def test_errors_and_reference_on_cpu():
    x = torch.randn(1, 20, 8).bfloat16()
    w = torch.randn(8, 4).bfloat16()
    dy = torch.randn(1, 20, 8).bfloat16()
    y, dx, dw = bench_conv1d.reference(x, w, dy)
    assert y.dtype == dx.dtype == dw.dtype == torch.float32 and dx.shape == x.shape and dw.shape == w.shape
    assert bench_conv1d.errors(dx, dx) == (0.0, 0.0)
    norm, mx = bench_conv1d.errors(dx * 1.01, dx)
    assert norm == pytest.approx(0.01, rel=1e-5) and mx == pytest.approx(0.01, rel=1e-5)


def test_help():
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "conv1d.py"), "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--out" in res.stdout and "--variants" in res.stdout
