"""bench/ptx_audit.py on the CPU: the sequential state kernels compile for sm_90 with every 2-D load pipelined (a
synchronous one stalls each of their steps), and the audit's load parser tells the two kinds apart."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") == "1", reason="compiles for the GPU target: not under the interpreter"
)


def _audit_module():
    spec = importlib.util.spec_from_file_location("bench_ptx_audit", ROOT / "bench" / "ptx_audit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_load_parser_separates_async_copies_from_plain_loads():
    ttgir = "\n".join([
        "%a = ttg.async_copy_global_to_local %p, %s mask %m : tensor<64x32x!tt.ptr<bf16>, #blocked> -> <64x32xbf16>",
        "%b = tt.load %q, %m, %c : tensor<64x64x!tt.ptr<bf16>, #blocked3>",
        "%c = tt.load %g, %m : tensor<64x!tt.ptr<f32>, #blocked1>",
        "tt.store %o, %v, %m : tensor<64x16x!tt.ptr<bf16>, #blocked>",
    ])  # fmt: skip
    copies, plain = _audit_module().loads(ttgir)
    assert dict(copies) == {"64x32xbf16": 1}
    assert dict(plain) == {"64x64xbf16": 1, "64xf32": 1}  # the store is neither


@pytest.mark.parametrize("kernel", ["fwd_h", "bwd_dh"])
def test_state_pass_loads_are_pipelined(kernel):
    """Every 2-D operand of the forward and reverse state passes arrives by asynchronous copy at their first config
    (the kept q k^T * D of the reverse pass too, since it is masked on tokens only)."""
    audit = _audit_module()
    row = audit.audit(kernel, audit.KERNELS[kernel][0].configs[0])
    sync_2d = {shape: n for shape, n in row["sync_loads"].items() if shape.count("x") > 1}
    assert not sync_2d, sync_2d
    assert sum(row["async_copies"].values()) >= 3, row
    if row["registers"] is not None:  # Triton ships ptxas with its CUDA backend
        assert row["spill_bytes"] == 0, row
