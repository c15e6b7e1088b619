"""Loss falls on a tiny corpus, and the TensorBoard event file holds every promised scalar."""

from __future__ import annotations

import pytest

from tests.distributed_harness import run_on_ranks
from tests.training import bodies

SCALARS = [
    "train/loss",
    "train/z_loss",
    "train/lr",
    "train/grad_norm",
    "train/skipped_steps",
    "perf/tokens_per_s",
    "perf/tflops_per_gpu",
    "perf/mfu",
    "perf/peak_memory_gib",
    "val/loss",
    "val/ppl",
    "by_tokens/train/loss",
]


@pytest.mark.slow
def test_loss_falls_and_tensorboard_has_scalars(corpus, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    r = run_on_ranks(bodies.loss_falls_with_tensorboard, 1, (corpus, str(tmp_path)))[0]
    assert r["loss_error"] < 2e-5  # CE + z-loss equal PyTorch's cross_entropy / logsumexp^2
    losses = r["losses"]
    first, last = sum(losses[s] for s in (1, 2, 3)) / 3, sum(losses[s] for s in (28, 29, 30)) / 3
    assert last < first - 1.0, (first, last)
    files = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert len(files) == 1
    acc = EventAccumulator(str(files[0]))
    acc.Reload()
    tags = acc.Tags()
    missing = [t for t in SCALARS if t not in tags["scalars"]]
    assert not missing, missing
    assert any("config" in t for t in tags["tensors"])  # add_text lands as a tensor summary
    assert [e.step for e in acc.Scalars("train/loss")] == [5, 10, 15, 20, 25, 30]
