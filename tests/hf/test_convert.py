"""hf -> Megatron distributed checkpoint -> hf is exact; the export opens in transformers; bad input is refused."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")

from megatron_hybrid.hf import load_hf_state  # noqa: E402
from tests.hf.test_logits_parity import _hf_model, tiny_olmo3, tiny_olmo_hybrid  # noqa: E402


def _convert(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "megatron_hybrid.convert", *args], capture_output=True, text=True, env=env, timeout=600
    )
    return done


@pytest.mark.slow
@pytest.mark.parametrize("make_config", [tiny_olmo3, tiny_olmo_hybrid], ids=["olmo3", "olmo_hybrid"])
def test_round_trip_is_exact_and_loads_in_transformers(tmp_path, make_config):
    hf_dir, ckpt, back = tmp_path / "hf", tmp_path / "mcore", tmp_path / "back"
    original = _hf_model(make_config(), hf_dir)
    done = _convert("hf-to-mcore", "--hf", str(hf_dir), "--out", str(ckpt), "--tp", "2", "--pp", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    done = _convert("mcore-to-hf", "--ckpt", str(ckpt), "--out", str(back))
    assert done.returncode == 0, done.stderr[-3000:]

    before, after = load_hf_state(hf_dir), load_hf_state(back)
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key

    reloaded = type(original).from_pretrained(back).float().eval()
    ids = torch.randint(0, original.config.vocab_size, (2, 19))
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=ids).logits, original(input_ids=ids).logits)


def test_tp_that_cannot_split_the_heads_is_refused_before_writing(tmp_path):
    hf_dir, out = tmp_path / "hf", tmp_path / "mcore"
    _hf_model(tiny_olmo3(), hf_dir)
    done = _convert("hf-to-mcore", "--hf", str(hf_dir), "--out", str(out), "--tp", "3")
    assert done.returncode != 0
    assert "tensor_model_parallel_size=3" in done.stderr
    assert not out.exists()


def _corrupt(hf_dir, edit):
    from safetensors.torch import load_file, save_file

    path = hf_dir / "model.safetensors"
    state = load_file(path)
    edit(state)
    save_file(state, path)


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda s: s.pop("model.layers.1.mlp.up_proj.weight"), "missing (1): model.layers.1.mlp.up_proj.weight"),
        (lambda s: s.update({"model.layers.9.mlp.up_proj.weight": torch.zeros(2)}), "unexpected (1)"),
        (lambda s: s.update({"lm_head.weight": torch.zeros(3, 48)}), "mis-shaped (1): lm_head.weight"),
    ],
    ids=["missing", "extra", "misshaped"],
)
def test_mismatched_hf_checkpoint_lists_the_tensors(tmp_path, edit, message):
    from megatron_hybrid.hf import mcore_model_from_hf

    hf_dir = tmp_path / "hf"
    _hf_model(tiny_olmo3(), hf_dir)
    _corrupt(hf_dir, edit)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        mcore_model_from_hf(hf_dir)
