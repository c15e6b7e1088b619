"""plan.py arithmetic and run.py's dry run and trainer command lines (no training)."""

from __future__ import annotations

import math

import pytest

from launch.ladder import plan, run


def test_size_rules():
    assert plan.nominal_params("60m") == 60e6 and plan.nominal_params("1b") == 1e9
    assert plan.ladder_lr("60m", 2048) == pytest.approx(0.0047 * (60 / 108) ** (-1 / 3))
    assert plan.ladder_lr("60m", 4096) == pytest.approx(plan.ladder_lr("60m", 2048) / 4)
    assert plan.ladder_lr("100m", 2048) < plan.ladder_lr("60m", 2048)  # larger models, smaller LR
    # Same tokens per step at any sequence length (up to rounding to the micro-batch).
    a, b = plan.ladder_batch("100m", 2048, 1) * 2048, plan.ladder_batch("100m", 4096, 1) * 4096
    assert abs(a - b) <= 4096
    assert plan.ladder_batch("60m", 4096, 8) % 8 == 0
    with pytest.raises(ValueError):
        plan.nominal_params("sixty")


def test_budget_is_spent_and_shared_fairly():
    budget = plan.Budget(minutes=20, startup_s=30, evals=10, eval_iters=2)
    runs = plan.plan(["60m", "100m"], ["transformer", "hybrid", "gdn"], budget)
    assert len(runs) == 6
    for size in ("60m", "100m"):
        arms = [r for r in runs if r.size == size]
        keys = {(r.lr, r.global_batch_size, r.train_iters, r.train_tokens, r.warmup_iters, r.decay_iters, r.seed)
                for r in arms}  # fmt: skip
        assert len(keys) == 1  # nothing differs between the arms of a size
        step_tokens = arms[0].global_batch_size * arms[0].seq_length
        share = sum(r.est_seconds for r in arms)
        # Each size spends its half of the budget, short by less than one step per arm.
        slack = sum(step_tokens / r.tokens_per_s for r in arms)
        assert 600 - slack <= share <= 600 + 1e-6
        r = arms[0]
        assert r.train_tokens == r.train_iters * step_tokens
        assert r.warmup_iters <= math.floor(0.1 * r.train_iters)
        assert r.decay_iters == round(0.2 * r.train_iters)
        assert r.eval_interval == r.train_iters // 10
    # Faster arms do not get more tokens; the slowest arm takes the longest.
    s60 = [r for r in runs if r.size == "60m"]
    assert max(s60, key=lambda r: r.est_seconds).arm == "gdn"


def test_fixed_tokens_and_warnings(tmp_path):
    budget = plan.Budget(tokens=8 * 128 * 30, seq_length=128, global_batch_size=8, micro_batch_size=4, lr=1e-3)
    runs = plan.plan(["60m"], ["transformer", "hybrid"], budget)
    assert [r.train_iters for r in runs] == [30, 30] and runs[0].lr == 1e-3
    assert any("only 30 steps" in w for w in plan.warnings_for(runs))
    assert "held-out" in plan.validation_warning(runs, valid_tokens=100)
    assert plan.validation_warning(runs, valid_tokens=10**6) is None
    with pytest.raises(ValueError, match="no tokens/s"):
        plan.plan(["60m"], ["mamba"], plan.Budget())
    measured = tmp_path / "throughput.json"
    measured.write_text('{"card": "x", "tokens_per_s": {"60m": {"transformer": 123}}}')
    table = plan.load_throughput(measured)
    assert table["60m"]["transformer"] == 123 and table["60m"]["hybrid"] == plan.ASSUMED_TOKENS_PER_S["60m"]["hybrid"]
    # an unmeasured size takes the nearest measured size's rate scaled by nominal size (conservative: ~1/N)
    assert table["100m"]["transformer"] == pytest.approx(123 * 60 / 100)
    assert table["370m"]["transformer"] == pytest.approx(123 * 60 / 370)
    measured.write_text('{"tokens_per_s": {"60m": {"gdn": 600}, "190m": {"gdn": 190}}}')
    table = plan.load_throughput(measured)
    assert table["100m"]["gdn"] == pytest.approx(600 * 60 / 100)  # 60m is nearer to 100m than 190m in log size
    assert table["370m"]["gdn"] == pytest.approx(190 * 190 / 370)
    assert table["190m"]["gdn"] == 190 and table["100m"]["hybrid"] == plan.ASSUMED_TOKENS_PER_S["100m"]["hybrid"]


def test_dry_run_prints_the_plan(capsys):
    out = run.main(["--sizes", "60m", "100m", "--arms", "transformer", "hybrid", "gdn", "--minutes", "20", "--dry-run"])
    text = capsys.readouterr().out
    assert len(out["runs"]) == 6 and "ladder_100m_gdn" in text and "total estimated" in text


def test_trainer_command_is_valid_config():
    """Every override run.py passes is a trainer key and lands where intended."""
    from megatron_hybrid.training.config import load_config, parse_overrides

    budget = plan.Budget(minutes=20)
    r = plan.plan(["60m"], ["gdn"], budget)[0]
    manifest = {"data_path": "/d/corpus", "split": "900,20,0", "vocab_size": 16000, "eos_id": 0}
    extra = run.parse_set(["num_workers=1", "60m:model_overrides.n_layers=4"], ["60m"])["60m"]
    for wsd in (False, True):
        args = run.trainer_args(r, manifest, run.Path("/tmp/x"), wsd, False, extra)
        assert args[3:5] == ["--config", "ladder_60m_gdn"]
        if wsd and not run.trainer_supports_wsd():
            continue  # the keys the trainer still lacks (see README): only their names are checked
        cfg = load_config(args[4], parse_overrides(args[5:]))
        assert cfg.model == "ladder_60m_gdn" and cfg.data_path == ["/d/corpus"] and cfg.split == "900,20,0"
        assert cfg.model_overrides == {"vocab_size": 16000, "n_layers": 4}  # padded to 128: already a multiple
        assert cfg.train_iters == r.train_iters and cfg.resolved_train_iters() == r.train_iters
        assert cfg.lr == pytest.approx(r.lr) and cfg.min_lr == 0.0 and cfg.lr_warmup_iters == r.warmup_iters
        assert cfg.seed == 1234 and cfg.save is None and cfg.num_workers == 1 and cfg.bf16 is False
        assert cfg.lr_decay_style == ("WSD" if wsd else "linear") and cfg.lr_decay_iters == r.train_iters
        if wsd:
            assert (cfg.lr_wsd_decay_iters, cfg.lr_wsd_decay_style) == (r.decay_iters, "linear")
    assert run.schedule_overrides(r, True)["lr_wsd_decay_iters"] == r.decay_iters
    with pytest.raises(ValueError):
        run.parse_set(["190m:lr=1"], ["60m"])
