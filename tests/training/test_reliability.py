"""Resume equals uninterrupted; a kill during save leaves a loadable checkpoint; failures are named."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket

import pytest
import torch

from tests.distributed_harness import run_on_ranks
from tests.training import bodies


def resumed_against_full(r: dict) -> list[tuple[int, float, float]]:
    """(step, resumed-run loss, uninterrupted-run loss) for steps 1..6 of a ``bodies.resume_matches`` result."""
    return [(step, (r["first"] | r["second"])[step], r["full"][step]) for step in range(1, 7)]


@pytest.mark.slow
@pytest.mark.parametrize("fused_adam", [False, True], ids=["foreach-adamw", "fused-adamw"])
def test_resume_reproduces_uninterrupted_losses_dp2(corpus, tmp_path, fused_adam):
    # DP=2 with the distributed optimizer: optimizer state is sharded, so this covers its save/load; with fused AdamW
    # also the step counts it needs on the parameters' device and its flag surviving the load.
    r = run_on_ranks(bodies.resume_matches, 2, (corpus, str(tmp_path), {"fused_adam": fused_adam}))[0]
    assert r["fused_after_load"] is fused_adam
    assert sorted(r["first"]) == [1, 2, 3] and sorted(r["second"]) == [4, 5, 6]
    for step, got, want in resumed_against_full(r):
        assert abs(got - want) < 1e-6, (step, got, want)


@pytest.mark.slow
@pytest.mark.parametrize("before", [True, False], ids=["fused-to-foreach", "foreach-to-fused"])
def test_resume_switching_fused_adamw(corpus, tmp_path, before):
    """A checkpoint saved with one AdamW implementation resumes with the other (the default changed to fused on CUDA):
    the run's own choice is in force after the load, and the losses follow the uninterrupted run to fp32 rounding."""
    args = (corpus, str(tmp_path), {"fused_adam": before}, {"fused_adam": not before})
    r = run_on_ranks(bodies.resume_matches, 1, args)[0]
    assert r["fused_after_load"] is (not before)
    assert sorted(r["first"]) == [1, 2, 3] and sorted(r["second"]) == [4, 5, 6]
    for step, got, want in resumed_against_full(r):
        assert abs(got - want) <= 1e-5 * abs(want), (step, got, want)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_resume_with_fused_adamw_on_gpu(corpus, tmp_path):
    """The fused kernel on CUDA reads Adam's step on the device: created, saved, loaded and restored there."""
    r = run_on_ranks(bodies.resume_matches, 1, (corpus, str(tmp_path), {"fused_adam": True}))[0]
    assert r["fused_after_load"] is True
    for step, got, want in resumed_against_full(r):
        assert abs(got - want) <= 1e-4 * abs(want), (step, got, want)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_micro_batch_does_not_synchronise_the_host(corpus, tmp_path):
    """The hybrid's forward, fused loss and backward (Triton kernels, bf16) make no host-synchronising call, so the
    host runs ahead of the GPU across micro-batches."""
    overrides = {"bf16": True, "seq_length": 256, "micro_batch_size": 1, "global_batch_size": 4}
    error = run_on_ranks(bodies.micro_batch_sync_error, 1, (corpus, str(tmp_path), overrides))[0]
    assert error is None, error


@pytest.mark.slow
def test_kill_during_save_keeps_last_good_checkpoint(corpus, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ["TEST_PORT"] = str(port)
    proc = mp.get_context("spawn").Process(target=bodies.killed_during_save, args=(corpus, str(tmp_path)))
    proc.start()
    proc.join(300)
    try:  # the killed trainer's orphaned children (its process group), as a cluster's job kill would take them
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    assert proc.exitcode == -9, f"expected SIGKILL mid-save, got exit code {proc.exitcode}"
    assert (tmp_path / "ckpt" / "iter_0000004.tmp").is_dir()  # the half-finished save is there ...
    assert (tmp_path / "ckpt" / "latest").read_text().strip() == "iter_0000002"  # ... but not pointed to
    r = run_on_ranks(bodies.resume_after_kill, 1, (corpus, str(tmp_path)))[0]
    assert r["latest"] == "iter_0000002" and r["resumed_at"] == 2 and r["final"] == 6
    assert r["tmp_left"] == []  # the next save cleaned it up
    assert sorted(r["losses"]) == [3, 4, 5, 6]


@pytest.mark.slow
def test_failures_are_named_and_handled(corpus, tmp_path):
    r = run_on_ranks(bodies.failures, 1, (corpus, str(tmp_path)))[0]
    assert "stdlib.bin" in r["vocab"] and ">= the model's vocab size 200" in r["vocab"]
    assert "fused_cross_entropy: true needs CUDA" in r["fused_loss"]
    assert r["sigterm"] == ("SIGTERM", 2, "iter_0000002")
    assert r["stop_file"] == ("stop file", 1, False)
    assert "another model" in r["mismatch"] and "ffn_hidden" in r["mismatch"]
    nan = r["nan_skip"]
    assert nan["skipped"][3] == "nonfinite" and all(nan["skipped"][s] is None for s in (1, 2, 4, 5))
    assert nan["unchanged_at_3"] and nan["changed_at_4"] and nan["final_finite"]
    assert "3 consecutive steps" in r["nan_stop"]
