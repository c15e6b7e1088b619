"""corpus.py on a fake site-packages: the split is by package, deterministic, disjoint; caps hold."""

from __future__ import annotations

import json

import numpy as np
import pytest

from launch.ladder import corpus


def fake_site_packages(root, n_packages=40):
    """Packages of a few text files each, plus the things the builder must skip."""
    for i in range(n_packages):
        pkg = root / f"pkg{i:02d}"
        (pkg / "sub").mkdir(parents=True)
        (pkg / "__init__.py").write_text(f"# package {i}\nVALUE = {i}\n" * 20)
        (pkg / "sub" / "mod.py").write_text(f"def f{i}(x):\n    return x + {i}\n" * 30)
        (pkg / "README.md").write_text(f"# pkg{i}\n\nDocs for package {i}.\n" * 10)
        (pkg / "data.bin").write_bytes(b"\x00\x01" * 100)  # wrong suffix: never read
    (root / "single_module.py").write_text("print('one file is a package too')\n")
    (root / "pkg00-1.0.dist-info").mkdir()
    (root / "pkg00-1.0.dist-info" / "METADATA.txt").write_text("metadata, not text anyone wrote\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.py").write_text("cached\n")
    (root / "pkg01" / "binary.txt").write_bytes(b"text\x00with a nul")  # dropped: binary
    (root / "pkg02" / "huge.py").write_text("x = 1\n" * 50_000)  # 300 KB: over the file cap below
    return root


def test_packages_skip_metadata_and_caches(tmp_path):
    found = corpus.packages(fake_site_packages(tmp_path))
    assert "single_module" in found and len(found) == 41
    assert not any(name.endswith(".dist-info") or name == "__pycache__" for name in found)
    assert all(p.suffix in corpus.SUFFIXES for files in found.values() for p in files)


def test_split_is_deterministic_disjoint_and_never_empty(tmp_path):
    names = list(corpus.packages(fake_site_packages(tmp_path)))
    train, valid = corpus.split_packages(names, 300)
    assert (train, valid) == corpus.split_packages(reversed(names), 300)
    assert not set(train) & set(valid) and set(train) | set(valid) == set(names)
    assert valid and train
    # A name's side depends on the name only (sha256), not on which other packages exist.
    assert valid == sorted(n for n in names if corpus.is_valid_package(n, 300))
    _, valid_none = corpus.split_packages(["a", "b"], 0)
    assert len(valid_none) == 1
    # Too little held-out text: more packages join validation, in hash order, never all of them.
    sizes = {n: 100 for n in names}
    train_more, valid_more = corpus.split_packages(names, 300, sizes, min_valid_bytes=100 * (len(valid) + 3))
    assert set(valid) < set(valid_more) and len(valid_more) == len(valid) + 3
    ranked = sorted(set(names) - set(valid), key=corpus._hash)
    assert set(valid_more) - set(valid) == set(ranked[:3])
    assert len(corpus.split_packages(names, 300, sizes, min_valid_bytes=10**9)[0]) == 1


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_build_caps_split_and_order(tmp_path):
    site = fake_site_packages(tmp_path / "site")
    manifest = corpus.build(
        tmp_path / "out", [site], max_bytes=20_000, max_valid_bytes=3_000, min_valid_bytes=1_000,
        max_file_bytes=100_000, valid_permille=100, tokenizer="byte", workers=1, progress=False,
    )  # fmt: skip
    train, valid = _read(tmp_path / "out" / "train.jsonl"), _read(tmp_path / "out" / "valid.jsonl")
    train_pkgs, valid_pkgs = {d["package"] for d in train}, {d["package"] for d in valid}
    assert not train_pkgs & valid_pkgs
    assert valid_pkgs <= set(manifest["packages"]["valid"])
    assert manifest["train"]["bytes"] <= 20_000 and manifest["valid"]["bytes"] <= 3_000
    assert len(train_pkgs) > 10  # the cap samples across packages instead of cutting the alphabet
    assert not any(d["path"].endswith(("huge.py", "binary.txt")) for d in train + valid)
    n_train, n_valid, zero = (int(x) for x in manifest["split"].split(","))
    assert (n_train, n_valid, zero) == (len(train), len(valid), 0)

    # Valid documents are the tail of the one prepared dataset, in order (the trainer's split).
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    ds = IndexedDataset(manifest["data_path"], mmap=True)
    assert len(ds) == n_train + n_valid
    for i, doc in enumerate(valid):
        ids = np.asarray(ds[n_train + i])
        assert ids[-1] == manifest["eos_id"]
        assert bytes(ids[:-1].astype(np.uint8)) == doc["text"].encode()
    assert manifest["tokens"]["valid"] == sum(len(d["text"].encode()) + 1 for d in valid)
    # Deterministic: the same inputs give the same files.
    again = corpus.build(
        tmp_path / "again", [site], max_bytes=20_000, max_valid_bytes=3_000, min_valid_bytes=1_000,
        max_file_bytes=100_000, valid_permille=100, tokenizer="byte", workers=1, progress=False,
    )  # fmt: skip
    assert (tmp_path / "again" / "train.jsonl").read_bytes() == (tmp_path / "out" / "train.jsonl").read_bytes()
    assert again["split"] == manifest["split"]


def test_bpe_tokenizer(tmp_path):
    pytest.importorskip("tokenizers")
    site = fake_site_packages(tmp_path / "site", n_packages=12)
    manifest = corpus.build(
        tmp_path / "out", [site], max_bytes=30_000, max_valid_bytes=5_000, min_valid_bytes=0, valid_permille=200,
        tokenizer="bpe", vocab_size=400, bpe_sample_bytes=20_000, workers=1, progress=False,
    )  # fmt: skip
    assert manifest["eos_id"] == 0  # the special token is the first id
    assert 257 < manifest["vocab_size"] <= 400
    assert manifest["tokens"]["train"] < manifest["train"]["bytes"]  # merges happened
