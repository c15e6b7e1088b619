"""report.py on synthetic TensorBoard events with the trainer's tags and curves of known answer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from launch.ladder import report

TOKENS = np.arange(100, 1001, 100)  # validation every 100 tokens up to 1000


def write_run(root, name, losses, tokens_per_s=1000.0):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(root / "tensorboard" / name))
    for step, (t, loss) in enumerate(zip(TOKENS, losses), 1):
        writer.add_scalar("val/loss", float(loss), step)  # what Monitor.scalar writes
        writer.add_scalar("by_tokens/val/loss", float(loss), int(t))
        writer.add_scalar("by_tokens/train/loss", float(loss) + 0.1, int(t))
        writer.add_scalar("by_tokens/perf/tokens_per_s", tokens_per_s, int(t))
    writer.close()


def test_efficiency_known_answers():
    transformer = (TOKENS, 5 - 2 * TOKENS / 1000)  # ends at 3.0
    better = (TOKENS, 5 - 2.5 * TOKENS / 1000)  # reaches 3.0 at 800 tokens
    worse = (TOKENS, 5 - 1.8 * TOKENS / 1000)  # ends at 3.2, which the transformer reaches at 900
    e = report.efficiency(transformer, better)
    assert e["arm_better"] and e["loss_level"] == pytest.approx(3.0)
    assert e["arm_tokens"] == pytest.approx(800) and e["ratio"] == pytest.approx(1.25)
    assert e["fewer_tokens_fraction"] == pytest.approx(0.2)
    e = report.efficiency(transformer, worse)
    assert not e["arm_better"] and e["transformer_tokens"] == pytest.approx(900)
    assert e["ratio"] == pytest.approx(0.9)
    assert report.efficiency(transformer, transformer)["ratio"] == pytest.approx(1.0)


def test_power_fit_recovers_exponent():
    n = [1e7, 4e7, 1.6e8]
    fit = report.power_fit(n, [7.0 * x**-0.08 for x in n])
    assert fit["alpha"] == pytest.approx(0.08) and fit["b"] == pytest.approx(7.0)
    assert report.power_fit([1e7], [3.0]) is None


def test_report_from_event_files(tmp_path):
    runs = tmp_path / "runs"
    params = {s: report.non_embedding_params(s, "transformer", {}) for s in ("60m", "100m")}
    for size in ("60m", "100m"):
        shift = 7.0 * params[size] ** -0.05 - 3.0  # final transformer loss follows a known power law
        write_run(runs, f"{size}_transformer", 5 - 2 * TOKENS / 1000 + shift, 2000.0)
        write_run(runs, f"{size}_hybrid", 5 - 2.5 * TOKENS / 1000 + shift, 1500.0)
    out = tmp_path / "results"
    result = report.report(runs, out)
    summary = result["summary"]
    assert summary["sizes"] == ["60m", "100m"] and summary["arms"] == ["transformer", "hybrid"]
    for size in ("60m", "100m"):
        assert summary["efficiency"][f"{size}_hybrid"]["ratio"] == pytest.approx(1.25)
    assert summary["fits"]["transformer"]["alpha"] == pytest.approx(0.05, rel=1e-6)
    assert summary["fits"]["transformer"]["sizes"] == 2
    saved = json.loads((out / "ladder.json").read_text())
    assert {"environment", "runs", "summary"} <= set(saved)
    assert saved["runs"]["60m_hybrid"]["val"]["tokens"] == TOKENS.tolist()
    assert saved["environment"]["commit"]
    assert json.loads((out / "throughput.json").read_text())["tokens_per_s"]["100m"] == {
        "transformer": 2000,
        "hybrid": 1500,
    }
    assert (out / "ladder.png").stat().st_size > 10_000
    md = (out / "ladder.md").read_text()
    assert "1.25x" in md and "ladder.png" in md and "two points" in md
