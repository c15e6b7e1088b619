"""The trainer on 2 gloo processes: TP=2 (+SP), PP=2, PP=2 interleaved, DP=2 give the 1-rank losses.

Every layout starts from the same weights (a step-0 checkpoint of the 1-rank model, loaded with
``pretrained_checkpoint``, which reshards it) and reads the same data order; fp32 on the CPU, so
only the reduction order differs and the per-step losses agree to ~1e-5.
"""

from __future__ import annotations

import pytest

from tests.distributed_harness import run_on_ranks
from tests.training import bodies

LAYOUTS = {
    "tp2_sp": dict(tensor_model_parallel_size=2, sequence_parallel=True),
    "pp2": dict(pipeline_model_parallel_size=2),
    "pp2_vp2": dict(pipeline_model_parallel_size=2, virtual_pipeline_model_parallel_size=2),
    "dp2": dict(),
}


@pytest.fixture(scope="module")
def init_checkpoint(corpus, tmp_path_factory) -> str:
    workdir = tmp_path_factory.mktemp("init")
    run_on_ranks(bodies.train_losses, 1, (corpus, str(workdir), {"save": str(workdir / "ckpt"), "exit_interval": 0}))
    return str(workdir / "ckpt")


@pytest.fixture(scope="module")
def reference(corpus, init_checkpoint, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("ref"))
    overrides = {"pretrained_checkpoint": init_checkpoint}
    return run_on_ranks(bodies.train_losses, 1, (corpus, workdir, overrides))[0]["losses"]


@pytest.mark.slow
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layout_matches_single_rank(layout, corpus, init_checkpoint, reference, tmp_path):
    overrides = LAYOUTS[layout] | {"pretrained_checkpoint": init_checkpoint}
    results = run_on_ranks(bodies.train_losses, 2, (corpus, str(tmp_path), overrides))
    for r in results:
        assert r["step"] == 4
        assert sorted(r["losses"]) == [1, 2, 3, 4]
        for step, loss in reference.items():
            assert abs(r["losses"][step] - loss) < 2e-5, (layout, step, r["losses"][step], loss)
