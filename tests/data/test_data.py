"""Data: prepare -> indexed dataset round trip, .npy memmaps, input checks, loader order, DALI parity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from megatron_hybrid.data import loader
from megatron_hybrid.data.checks import DataError, check_token_ids, open_indexed_tokens, open_npy_tokens
from megatron_hybrid.data.dali import dali_available
from megatron_hybrid.data.datasets import NpyTokenDataset, parse_blend
from megatron_hybrid.data.prepare import prepare


@pytest.fixture
def text_inputs(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.txt").write_text("hello world\n")
    (raw / "b.py").write_text("print('hi')  # é\n")
    with open(raw / "c.jsonl", "w") as f:
        for text in ("first doc", "second doc"):
            f.write(json.dumps({"text": text}) + "\n")
    return raw


def test_prepare_roundtrip_and_worker_invariance(text_inputs, tmp_path):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    one = prepare([str(text_inputs)], str(tmp_path / "one"), workers=1, progress=False)
    two = prepare([str(text_inputs)], str(tmp_path / "two"), workers=2, progress=False)
    assert one["documents"] == 4 and one["dtype"] == "uint16" and one["eos_id"] == 256
    assert (tmp_path / "one.bin").read_bytes() == (tmp_path / "two.bin").read_bytes()
    assert two["tokens"] == one["tokens"]
    ds = IndexedDataset(str(tmp_path / "one"))
    docs = [ds[i].tolist() for i in range(len(ds))]
    expected = ["hello world\n", "print('hi')  # é\n", "first doc", "second doc"]  # a.txt, b.py, c.jsonl (sorted)
    assert docs == [list(t.encode()) + [256] for t in expected]
    assert not list(tmp_path.glob("*.tmp"))


def test_prepare_hf_tokenizer(text_inputs, tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok.train_from_iterator(
        ["hello world print first second doc"] * 10,
        trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<|endoftext|>"]),
    )
    path = tmp_path / "tok.json"
    tok.save(str(path))
    info = prepare([str(text_inputs / "c.jsonl")], str(tmp_path / "hf"), tokenizer=str(path), progress=False)
    assert info["documents"] == 2 and info["eos_id"] == tok.token_to_id("<|endoftext|>")


def test_npy_memmaps_raw_and_headered_without_copy(tmp_path):
    tokens = np.arange(1000, dtype=np.uint32)
    tokens.tofile(tmp_path / "raw.npy")  # OLMo/Dolma style: no header
    np.save(tmp_path / "hdr.npy", tokens.astype(np.uint16))
    raw = open_npy_tokens(tmp_path / "raw.npy", "uint32")
    hdr = open_npy_tokens(tmp_path / "hdr.npy", None)
    assert isinstance(raw, np.memmap) and isinstance(hdr, np.memmap)
    assert np.array_equal(raw, tokens) and np.array_equal(hdr, tokens)
    ds = NpyTokenDataset([str(tmp_path / "raw.npy")], "uint32", 16, "100,0,0", 0, seed=1, num_samples=200)
    assert len(ds.windows) == (1000 - 1) // 16
    sample = ds[0]
    assert torch.equal(sample["labels"][:-1], sample["tokens"][1:])
    assert torch.equal(sample["labels"] - sample["tokens"], torch.ones(16, dtype=torch.long))
    # Epoch wrap-around: each epoch is a full permutation of the windows, reseeded.
    n = len(ds.windows)
    first = sorted(int(ds[i]["tokens"][0]) for i in range(n))
    second = sorted(int(ds[n + i]["tokens"][0]) for i in range(n))
    assert first == second and [int(ds[i]["tokens"][0]) for i in range(n)] != [
        int(ds[n + i]["tokens"][0]) for i in range(n)
    ]
    # Same seed, same order.
    again = NpyTokenDataset([str(tmp_path / "raw.npy")], "uint32", 16, "100,0,0", 0, seed=1, num_samples=200)
    assert all(torch.equal(ds[i]["tokens"], again[i]["tokens"]) for i in range(0, 200, 17))


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(DataError, match="missing.npy does not exist"):
        open_npy_tokens(tmp_path / "missing.npy", "uint32")
    np.arange(7, dtype=np.uint16).tofile(tmp_path / "odd.npy")  # 14 bytes: not whole uint32 tokens
    with pytest.raises(DataError, match="not a multiple of uint32"):
        open_npy_tokens(tmp_path / "odd.npy", "uint32")
    np.save(tmp_path / "u16.npy", np.arange(10, dtype=np.uint16))
    with pytest.raises(DataError, match="holds uint16 tokens but data_dtype is uint32"):
        open_npy_tokens(tmp_path / "u16.npy", "uint32")
    with pytest.raises(DataError, match="cannot hold the model's vocabulary"):
        check_token_ids(np.zeros(10, dtype=np.uint16), 100_352, "x.npy")
    with pytest.raises(DataError, match=r"x.npy: token id 500 at position 3 is >= the model's vocab size 320"):
        check_token_ids(np.array([1, 2, 3, 500, 4], dtype=np.uint32), 320, "x.npy")
    with pytest.raises(DataError, match="nope.bin does not exist"):
        open_indexed_tokens(str(tmp_path / "nope"), None)


def test_indexed_dtype_checked(text_inputs, tmp_path):
    prepare([str(text_inputs)], str(tmp_path / "ds"), progress=False)
    assert open_indexed_tokens(str(tmp_path / "ds"), "uint16").dtype == np.uint16
    with pytest.raises(DataError, match="holds uint16 tokens but data_dtype is int32"):
        open_indexed_tokens(str(tmp_path / "ds"), "int32")


def test_parse_blend():
    b = parse_blend(["0.3 a", "0.7", "b"])
    assert b.prefixes == ["a", "b"] and b.weights == [0.3, 0.7] and b.format == "indexed"
    assert parse_blend(["x.bin"]).prefixes == ["x"]
    assert parse_blend(["p1.npy", "p2.npy"]).format == "npy"
    with pytest.raises(DataError, match="pairs"):
        parse_blend(["0.5", "a", "0.5"])
    with pytest.raises(DataError, match="pre-mixed"):
        parse_blend(["0.5", "a.npy", "0.5", "b.npy"])


def test_order_independent_of_layout_and_resumable():
    gbs, mbs = 16, 2
    for dp in (1, 2, 4, 8):
        for step in (0, 5):
            got = np.sort(
                np.concatenate([loader.rank_sample_indices(step, mbs, dp, r, gbs).ravel() for r in range(dp)])
            )
            assert np.array_equal(got, np.arange(step * gbs, (step + 1) * gbs))
    full = list(loader.StepBatchSampler(0, 6, mbs, 2, 1, gbs))
    resumed = list(loader.StepBatchSampler(4, 2, mbs, 2, 1, gbs))
    assert resumed == full[-len(resumed) :]


class _Toy(torch.utils.data.Dataset):
    def __len__(self):
        return 10_000

    def __getitem__(self, i):
        t = torch.arange(i, i + 9)
        return {"tokens": t[:-1], "labels": t[1:]}


def test_default_loader_yields_planned_samples():
    batches = list(loader.micro_batches(_Toy(), 3, 2, 2, 2, 1, 8))
    assert len(batches) == 4  # 2 steps x 2 micro-batches
    expected = loader.rank_sample_indices(3, 2, 2, 1, 8).tolist() + loader.rank_sample_indices(4, 2, 2, 1, 8).tolist()
    assert [b["tokens"][:, 0].tolist() for b in batches] == expected


@pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI not installed (optional extra: pip install .[dali])")
def test_dali_loader_matches_default():
    from megatron_hybrid.data import dali

    args = (_Toy(), 3, 4, 2, 2, 1, 8)
    default = list(loader.micro_batches(*args))
    via_dali = list(dali.micro_batches(*args, num_workers=2))
    assert len(default) == len(via_dali)
    for a, b in zip(default, via_dali):
        assert torch.equal(a["tokens"], b["tokens"].cpu()) and torch.equal(a["labels"], b["labels"].cpu())


def _run_config(tmp_path, data_path, **kw):
    from megatron_hybrid.training.config import TrainConfig

    return TrainConfig(
        data_path=data_path,
        seq_length=16,
        train_iters=4,
        split="100,0,0",
        data_cache_path=str(tmp_path / "cache"),
        **kw,
    )


def test_datasets_rebuild_from_recipe_and_pickle_light(tmp_path):
    import pickle

    from megatron_hybrid.data.datasets import build_datasets

    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(20):
        (raw / f"{i}.txt").write_text(f"document {i} " * 20)
    prepare([str(raw)], str(tmp_path / "ds"), progress=False)
    np.arange(5000, dtype=np.uint32).tofile(tmp_path / "tok.npy")
    for data_path, kw in (([str(tmp_path / "ds")], {}), ([str(tmp_path / "tok.npy")], {"data_dtype": "uint32"})):
        train, _ = build_datasets(_run_config(tmp_path, data_path, **kw), 5001, 256, 64, 0, str(tmp_path / "cache"))
        again = train.recipe()
        assert all(torch.equal(train[i]["tokens"], again[i]["tokens"]) for i in range(64))
        assert len(pickle.dumps(train.recipe)) < 10_000
    npy_train, _ = build_datasets(
        _run_config(tmp_path, [str(tmp_path / "tok.npy")], data_dtype="uint32"),
        5001,
        256,
        64,
        0,
        str(tmp_path / "cache"),
    )
    clone = pickle.loads(pickle.dumps(npy_train))
    assert len(pickle.dumps(npy_train)) < 10_000 and torch.equal(clone[3]["tokens"], npy_train[3]["tokens"])


@pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI not installed (optional extra: pip install .[dali])")
def test_dali_loader_matches_default_on_indexed_data(tmp_path):
    from megatron_hybrid.data import dali
    from megatron_hybrid.data.datasets import build_datasets

    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(20):
        (raw / f"{i}.txt").write_text(f"document {i} " * 20)
    prepare([str(raw)], str(tmp_path / "ds"), progress=False)
    train, _ = build_datasets(_run_config(tmp_path, [str(tmp_path / "ds")]), 320, 256, 64, 0, str(tmp_path / "cache"))
    args = (train, 1, 3, 2, 2, 0, 8)
    for a, b in zip(loader.micro_batches(*args), dali.micro_batches(*args, num_workers=2), strict=True):
        assert torch.equal(a["tokens"], b["tokens"].cpu()) and torch.equal(a["labels"], b["labels"].cpu())
