"""Fast checks without processes: config loading and errors, presets, dry run, spike test, compare."""

from __future__ import annotations

import math

import numpy as np
import pytest

from megatron_hybrid.training.config import CONFIG_DIR, TrainConfig, load_config, parse_overrides
from megatron_hybrid.training.stability import NonFiniteLossError, SpikeDetector


def test_overrides_are_typed_and_unknown_keys_fail():
    cfg = load_config(
        "smoke",
        parse_overrides(
            [
                "--lr",
                "1e-3",
                "--train-iters=7",
                "--bf16",
                "false",
                "--model-overrides.n_layers",
                "8",
                "--sequence-parallel",
            ]
        ),
    )
    assert cfg.lr == 1e-3 and cfg.train_iters == 7 and cfg.bf16 is False and cfg.sequence_parallel is True
    assert cfg.model_overrides == {"vocab_size": 320, "n_layers": 8}
    with pytest.raises(ValueError, match="unknown config key 'learning_rate'"):
        load_config("smoke", {"learning_rate": "1"})
    with pytest.raises(ValueError, match="train_iters: cannot read 'ten' as int"):
        load_config("smoke", {"train_iters": "ten"})


def test_unknown_key_in_yaml_fails(tmp_path):
    (tmp_path / "bad.yaml").write_text("model: tiny_hybrid\nmicro_batch: 2\n")
    with pytest.raises(ValueError, match="unknown config key 'micro_batch' in .*bad.yaml"):
        load_config(str(tmp_path / "bad.yaml"))


def test_batch_that_does_not_divide_fails():
    cfg = TrainConfig(train_iters=1, global_batch_size=6, micro_batch_size=4)
    with pytest.raises(
        ValueError, match="global_batch_size 6 is not divisible by micro_batch_size 4 x data-parallel size 1"
    ):
        cfg.check(world_size=1)
    with pytest.raises(ValueError, match="world size 3 is not divisible"):
        TrainConfig(train_iters=1, tensor_model_parallel_size=2).check(world_size=3)


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.stem.startswith("_")))
def test_every_preset_resolves_and_validates(name):
    from megatron_hybrid.training import model as model_api

    cfg = load_config(name)
    world = cfg.tensor_model_parallel_size * cfg.pipeline_model_parallel_size
    cfg.check(world_size=world)
    mcfg = model_api.model_config(cfg.model, cfg.model_overrides)
    mcfg.validate(
        cfg.tensor_model_parallel_size, cfg.pipeline_model_parallel_size, cfg.virtual_pipeline_model_parallel_size
    )


def test_7b_arms_share_recipe_and_fit_80gb():
    from megatron_hybrid.training import model as model_api
    from megatron_hybrid.training.estimate import memory_estimate

    hybrid, olmo3 = load_config("olmo_hybrid_7b"), load_config("olmo3_7b")
    a, b = hybrid.to_dict(), olmo3.to_dict()
    assert {k for k in a if a[k] != b[k]} == {"model"}
    assert hybrid.resolved_train_iters() == olmo3.resolved_train_iters()
    for cfg in (hybrid, olmo3):
        for world in (8, 512):  # one node, 64 nodes
            mem = memory_estimate(cfg, model_api.model_config(cfg.model), world)
            assert mem["total"] < 70, (cfg.model, world, mem)


def test_dry_run_prints_layout_params_flops_memory(capsys):
    from megatron_hybrid import train

    train.main(["--config", "olmo_hybrid_7b", "--dry-run", "--world-size", "64"])
    out = capsys.readouterr().out
    assert "7,430,870,688 parameters" in out
    assert "world 64 = TP 2 x PP 1 x DP 32" in out
    assert "FLOPs/token     44.0" in out or "FLOPs/token     44.1" in out
    assert "memory/GPU" in out and '"lr": 0.0003' in out


def test_spike_detector_skips_spikes_and_stops_on_nonfinite():
    d = SpikeDetector(sigma=6.0, window=128, min_history=20, max_nonfinite=3)
    rng = np.random.default_rng(0)
    for _ in range(50):
        assert d.judge(3.0 + 0.01 * rng.standard_normal(), 1.0 + 0.01 * rng.standard_normal()) is None
    assert d.judge(3.5, 1.0) == "loss spike"
    assert d.judge(3.0, 5.0) == "grad_norm spike"
    assert d.judge(float("nan"), 1.0) == "nonfinite"
    assert d.judge(3.0, 1.0) is None  # a finite step resets the NaN streak
    d2 = SpikeDetector(max_nonfinite=3)
    d2.judge(float("inf"), 1.0)
    d2.judge(1.0, float("nan"))
    with pytest.raises(NonFiniteLossError, match="3 consecutive steps"):
        d2.judge(float("nan"), float("nan"))
    state = d.state_dict()
    d3 = SpikeDetector()
    d3.load_state_dict(state)
    assert d3.state_dict() == state


def test_token_efficiency():
    from megatron_hybrid.compare import describe, token_efficiency

    tokens = np.linspace(1, 100, 100)
    a = (tokens, 3.0 / np.sqrt(tokens))  # reaches b's final loss earlier
    b = (tokens, 3.3 / np.sqrt(tokens))
    eff = token_efficiency(a, b, ("hybrid", "olmo3"))
    assert eff["better"] == "hybrid"
    # 3/sqrt(t) = 0.33 at t = (3/0.33)^2 = 82.6 tokens: 17.4% fewer than 100.
    assert math.isclose(eff["fewer_tokens_fraction"], 1 - (3.0 / 0.33) ** 2 / 100, rel_tol=1e-3)
    assert "fewer tokens" in describe(eff)


def test_checkpoint_compatibility_messages(tmp_path):
    from megatron_hybrid.training.checkpoint import CheckpointMismatchError, check_compatible

    meta = {"model_config": {"d_model": 48, "n_layers": 4}, "layout": {"tensor_model_parallel_size": 1}}
    check_compatible(meta, {"d_model": 48, "n_layers": 4}, {"tensor_model_parallel_size": 1}, False, tmp_path)
    with pytest.raises(CheckpointMismatchError, match="another model.*d_model: checkpoint 48 vs run 64"):
        check_compatible(meta, {"d_model": 64, "n_layers": 4}, {"tensor_model_parallel_size": 1}, False, tmp_path)
    with pytest.raises(CheckpointMismatchError, match="another parallel layout.*tensor_model_parallel_size"):
        check_compatible(meta, {"d_model": 48, "n_layers": 4}, {"tensor_model_parallel_size": 2}, False, tmp_path)
    check_compatible(meta, {"d_model": 48, "n_layers": 4}, {"tensor_model_parallel_size": 2}, True, tmp_path)


def test_runtime_env_fills_what_the_launcher_left_unset():
    from megatron_hybrid.training.runtime_env import RUNTIME_ENV, apply_runtime_env

    env = {"CUDA_DEVICE_MAX_CONNECTIONS": "8", "PATH": "/bin"}
    in_effect = apply_runtime_env(env)
    assert in_effect["CUDA_DEVICE_MAX_CONNECTIONS"] == "8"  # the user's value wins
    assert env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == RUNTIME_ENV["TORCH_NCCL_ASYNC_ERROR_HANDLING"]
    assert set(in_effect) == set(RUNTIME_ENV) and env["PATH"] == "/bin"


def test_multi_tensor_ops_equal_megatrons_fallbacks():
    """The foreach-based grad norm and scale give Megatron's local (Python-loop) results; install() swaps them in."""
    import torch
    from megatron.core import utils
    from megatron.core.optimizer import clip_grads

    from megatron_hybrid.compat import multi_tensor

    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(n, generator=gen) for n in (5, 300, 7)]
    flag = torch.zeros(1, dtype=torch.int)
    (norm,), _ = multi_tensor.multi_tensor_l2norm(0, flag, [grads], False)
    assert norm.item() == pytest.approx(torch.cat(grads).norm().item(), rel=1e-6)
    for scale in (1.0, 0.37):
        out = [torch.empty(g.shape, dtype=torch.bfloat16) for g in grads]
        multi_tensor.multi_tensor_scale(0, flag, [grads, out], scale)  # fp32 -> bf16, as main -> model params
        ref = [g.clone() for g in grads]
        utils.local_multi_tensor_scale(0, flag, [grads, ref], scale)
        assert all(torch.equal(o, r.bfloat16()) for o, r in zip(out, ref))
    inplace = [g.clone() for g in grads]
    multi_tensor.multi_tensor_scale(0, flag, [inplace, inplace], 0.5)  # clipping: in place
    assert all(torch.equal(a, g * 0.5) for a, g in zip(inplace, grads))
    multi_tensor.install()
    assert clip_grads.l2_norm_impl is multi_tensor.multi_tensor_l2norm
    assert clip_grads.multi_tensor_scale_impl is multi_tensor.multi_tensor_scale


def test_venv_setup_checks_free_disk_first():
    """`make` refuses to set up the venv on a disk without room for it, naming the fix (CI once died in pip with
    ENOSPC half-way through the install)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    full = subprocess.run(
        ["make", "--no-print-directory", "venv-disk-check", "VENV_MIN_FREE_GIB=1000000"],
        cwd=root, capture_output=True, text=True,
    )  # fmt: skip
    assert full.returncode != 0
    assert "setting up .venv needs about 1000000 GiB" in full.stdout and "VENV_MIN_FREE_GIB=N" in full.stdout
    roomy = subprocess.run(["make", "venv-disk-check", "VENV_MIN_FREE_GIB=0"], cwd=root, capture_output=True, text=True)
    assert roomy.returncode == 0, roomy.stdout + roomy.stderr


def test_fused_adamw_switch_matches_foreach():
    """fused_adamw.set_fused switches Megatron's inner torch AdamW to the fused kernel (steps moved with it); three
    updates then equal the foreach implementation's to fp32 rounding."""
    import types

    import torch

    from megatron_hybrid.compat import fused_adamw

    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(n, generator=gen) for n in (7, 33)]
    grads = [[torch.randn(n, generator=gen) for n in (7, 33)] for _ in range(3)]
    results = []
    for fused in (False, True):
        params = [torch.nn.Parameter(t.clone()) for t in init]
        inner = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95))
        megatron_like = types.SimpleNamespace(chained_optimizers=[types.SimpleNamespace(optimizer=inner)])
        if fused:
            assert fused_adamw.set_fused(megatron_like, True) == 1 and fused_adamw.uses_fused(megatron_like)
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad = g.clone()
            inner.step()
        assert all(inner.state[p]["step"].item() == 3 for p in params)
        results.append([p.detach().clone() for p in params])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert fused_adamw.step_tensor(4, results[0][0], fused=True).dtype == torch.float32
