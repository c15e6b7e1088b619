"""Shared fixture: a small byte-level indexed corpus (a few stdlib packages), built once per session."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> str:
    from megatron_hybrid.data.prepare import prepare

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted((stdlib / "json").glob("*.py")) + sorted((stdlib / "email").glob("*.py"))
    prefix = tmp_path_factory.mktemp("corpus") / "stdlib"
    prepare([str(f) for f in files], str(prefix), tokenizer="byte", workers=1, progress=False)
    return str(prefix)
