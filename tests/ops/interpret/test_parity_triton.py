"""Logits parity with ``transformers`` through the Triton kernels (TRITON_INTERPRET=1): the path a GPU runs (fused
RMSNorm, QK norm, RoPE, SwiGLU and, for the hybrid, the GDN kernels), on the CPU parity tests' tiny models."""

from __future__ import annotations

import os

import pytest

assert os.environ.get("TRITON_INTERPRET") == "1", "run through tests/ops/test_triton_interpreter.py"

pytest.importorskip("transformers")

from tests.hf.test_logits_parity import _compare, _hf_model, tiny_olmo3, tiny_olmo_hybrid  # noqa: E402


def test_olmo3_logits_match_transformers_through_triton(tmp_path):
    _compare(_hf_model(tiny_olmo3(num_key_value_heads=2), tmp_path), tmp_path, seq_len=13)


def test_olmo_hybrid_logits_match_transformers_through_triton(tmp_path):
    _compare(_hf_model(tiny_olmo_hybrid(), tmp_path), tmp_path, seq_len=13)
