"""The autotuned kernels' launch path (``utils.fast_tuned_launch``): triton's Autotuner decides once per key, then
the remembered config goes straight to the kernel, and a new key (a key argument's value or an argument's dtype)
goes back to triton. Checked without a GPU: triton's tuning run and the kernel launch are recorded, not executed."""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl
from triton.runtime.autotuner import Autotuner

from megatron_hybrid.ops.gated_delta_rule import utils


@triton.jit
def _copy_kernel(x, y, N, BLOCK: tl.constexpr, MODE: tl.constexpr):
    o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y + o, tl.load(x + o, mask=o < N), mask=o < N)


@pytest.fixture
def tuner(monkeypatch):
    """A two-config autotuned kernel whose triton-side tuning picks the config by N's parity, and which records the
    tuning runs and the kernel launches it gets."""
    monkeypatch.setattr(utils, "is_interpret", lambda: False)
    monkeypatch.setenv("MEGATRON_HYBRID_AUTOTUNE", "1")
    configs = [triton.Config({"BLOCK": 16}, num_warps=2), triton.Config({"BLOCK": 32}, num_warps=4)]
    t = utils.autotune(configs=configs, key=["N", "MODE"])(_copy_kernel)
    t.tuning_runs, t.launches = [], []

    def triton_run(self, *args, **kwargs):  # what triton's own run ends in: a chosen config and a launch
        self.tuning_runs.append(args[2])
        self.best_config = self.configs[args[2] % 2]
        return self.fn.run(*args, **kwargs, **self.best_config.all_kwargs())

    monkeypatch.setattr(Autotuner, "run", triton_run)
    monkeypatch.setattr(t.fn, "run", lambda *a, **k: t.launches.append(k))
    return t


def test_tuned_config_is_remembered_per_key(tuner):
    x, y = torch.zeros(64), torch.zeros(64)
    tuner[(1,)](x, y, 64, MODE=0)
    tuner[(1,)](x, y, 64, MODE=0)
    assert tuner.tuning_runs == [64]  # the second launch did not go through triton's run
    assert tuner.launches[1]["BLOCK"] == tuner.launches[0]["BLOCK"] == 16
    assert tuner.launches[1]["num_warps"] == 2 and tuner.launches[1]["grid"] == (1,)
    assert tuner.best_config is tuner.configs[0]

    tuner[(1,)](x, y, 63, MODE=0)  # a key argument changed: triton decides again
    assert tuner.tuning_runs == [64, 63]
    assert tuner.launches[2]["BLOCK"] == 32 and tuner.best_config is tuner.configs[1]
    tuner[(1,)](x, y, 64, MODE=1)  # a constexpr key argument, by keyword
    assert tuner.tuning_runs == [64, 63, 64]


def test_argument_dtype_is_part_of_the_key(tuner):
    tuner[(1,)](torch.zeros(64), torch.zeros(64), 64, MODE=0)
    tuner[(1,)](torch.zeros(64, dtype=torch.bfloat16), torch.zeros(64), 64, MODE=0)
    assert tuner.tuning_runs == [64, 64]
    tuner[(1,)](torch.zeros(64, dtype=torch.bfloat16), torch.zeros(64), 64, MODE=0)
    assert tuner.tuning_runs == [64, 64]


def test_single_config_keeps_triton_run(monkeypatch):
    monkeypatch.setenv("MEGATRON_HYBRID_AUTOTUNE", "0")
    t = utils.autotune(configs=[triton.Config({"BLOCK": 16}), triton.Config({"BLOCK": 32})], key=["N"])(_copy_kernel)
    assert len(t.configs) == 1 and "run" not in t.__dict__


def test_configs_replaced_after_decoration_are_honoured(tuner):
    """bench/gdn_config_sweep.py cuts a tuned kernel's list to the one config it times: each launch must run it,
    not a config remembered from before; ``reset_tuning`` forgets the remembered choices."""
    x, y = torch.zeros(64), torch.zeros(64)
    tuner[(1,)](x, y, 64, MODE=0)  # remembers BLOCK=16 for this key
    full = tuner.configs
    tuner.configs = [full[1]]
    utils.reset_tuning(tuner)
    tuner[(1,)](x, y, 64, MODE=0)
    assert tuner.launches[-1]["BLOCK"] == 32
    tuner.configs = full
    utils.reset_tuning(tuner)
    tuner[(1,)](x, y, 64, MODE=0)
    assert tuner.tuning_runs == [64, 64, 64] and tuner.launches[-1]["BLOCK"] == 16


@pytest.mark.parametrize(
    "K,V,warps", [(16, 48, [4]), (12, 24, [4]), (96, 192, [4, 8]), (64, 32, [4, 8]), (192, 96, [4, 8])]
)
def test_wy_backward_tunes_eight_warps_only_on_wide_tiles(K, V, warps):
    """The WY backward's 8-warp build faulted on the H100 (Triton 3.6) at 16-wide blocks; triton's tuner prunes it
    there before benchmarking, with the blocks the host picks."""
    from megatron_hybrid.ops.gated_delta_rule import wy

    configs = [triton.Config({}, num_warps=w, num_stages=1) for w in (4, 8)]
    prune = wy.chunk_wy_bwd_kernel.early_config_prune
    BK, BV = utils.pick_block(K, 64), utils.pick_block(V, 64)
    assert [c.num_warps for c in prune(configs, {}, K=K, V=V, BK=BK, BV=BV, H=2)] == warps
