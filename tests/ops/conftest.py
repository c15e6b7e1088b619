"""Fixtures for the ops tests.

- ``torch.empty`` / ``empty_like`` are filled with NaN inside these tests (as fla's tests do), so that an output
  element a kernel forgets to write fails loudly instead of passing as stale memory.
- The Triton-interpreter tests in ``interpret/`` need TRITON_INTERPRET=1 set before triton is imported, which a
  shared pytest process cannot promise; ``test_triton_interpreter.py`` runs them in a child process with it set,
  and they are collected directly only when the variable is already set (``TRITON_INTERPRET=1 pytest tests/ops``).
"""

from __future__ import annotations

import os

import pytest
import torch

collect_ignore = [] if os.environ.get("TRITON_INTERPRET") == "1" else ["interpret"]


@pytest.fixture(autouse=True)
def nan_empty(monkeypatch):
    real_empty, real_empty_like = torch.empty, torch.empty_like

    def empty(*args, **kwargs):
        x = real_empty(*args, **kwargs)
        if x.is_floating_point():
            x.fill_(float("nan"))
        return x

    def empty_like(*args, **kwargs):
        x = real_empty_like(*args, **kwargs)
        if x.is_floating_point():
            x.fill_(float("nan"))
        return x

    monkeypatch.setattr(torch, "empty", empty)
    monkeypatch.setattr(torch, "empty_like", empty_like)
    yield
