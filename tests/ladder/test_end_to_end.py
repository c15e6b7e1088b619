"""run.py end to end on a CPU: fake site-packages -> corpus -> 2 arms x a few steps -> report."""

from __future__ import annotations

import json

import pytest

from launch.ladder import run
from tests.ladder.test_corpus import fake_site_packages


@pytest.mark.slow
def test_two_arms_through_run_and_report(tmp_path, capsys):
    site = fake_site_packages(tmp_path / "site", n_packages=30)
    out, results = tmp_path / "ladder", tmp_path / "results"
    tiny = [
        x
        for kv in ("n_heads=4", "n_layers=4", "d_model=32", "ffn_hidden=64")
        for x in ("--set", f"model_overrides.{kv}")
    ]
    record = run.main(
        ["--out", str(out), "--results", str(results), "--corpus-roots", str(site), "--tokenizer", "byte",
         "--min-valid-bytes", "3000", "--workers", "1", "--sizes", "60m", "--arms", "transformer", "hybrid",
         "--seq-length", "64",
         "--global-batch-size", "4", "--micro-batch-size", "4", "--tokens", str(4 * 64 * 6), "--lr", "3e-3",
         "--evals", "2", "--eval-iters", "1", *tiny]
    )  # fmt: skip
    assert [r["train_iters"] for r in record["runs"]] == [6, 6]
    saved = json.loads((results / "ladder.json").read_text())
    for arm in ("transformer", "hybrid"):
        val = saved["runs"][f"60m_{arm}"]["val"]
        assert val["tokens"] == [4 * 64 * 3, 4 * 64 * 6]  # two validation passes, against tokens
        assert all(2.0 < loss < 7.0 for loss in val["loss"])  # byte-level: ln(384) ~ 5.95 at init
    assert "60m_hybrid" in saved["summary"]["efficiency"]
    assert (results / "ladder.png").exists() and (out / "logs" / "60m_hybrid.done").exists()
    # A rerun of the same plan skips finished runs (a changed plan or override would rerun them).
    again = ["--out", str(out), "--sizes", "60m", "--arms", "transformer", "--tokens", str(4 * 64 * 6), "--lr", "3e-3",
             "--seq-length", "64", "--global-batch-size", "4", "--micro-batch-size", "4", "--evals", "2",
             "--eval-iters", "1", "--no-report", *tiny]  # fmt: skip
    run.main(again)
    assert "finished earlier, skipped" in capsys.readouterr().out
    # ... and plan.json still holds both arms, so the report covers runs made by separate commands.
    assert [r["arm"] for r in json.loads((out / "plan.json").read_text())["runs"]] == ["transformer", "hybrid"]
