"""A real corpus nobody here wrote: the Python source and docs of the interpreter's installed packages.

    python -m launch.ladder.corpus --out runs/ladder/data --max-bytes 400e6

Every top-level package (or single-module distribution) of site-packages is one unit of the
split: a package goes to validation when a hash of its name falls in the lowest
``--valid-permille``, so the held-out text is code the model has never seen a line of (a file-level
split would leak near-duplicates: vendored copies, generated stubs, the same docstrings). Within a
split, files are taken in a hash order of their paths until the byte cap, so a cap samples every
package instead of cutting the alphabet short.

Writes ``train.jsonl``, ``valid.jsonl`` and ``manifest.json``; optionally trains a byte-level BPE
(``tokenizers``) on a sample of the train split; then tokenizes both splits with the project's
``megatron_hybrid.data.prepare`` into ONE indexed dataset, train documents first, so the trainer's
contiguous document ``split`` ("n_train,n_valid,0", recorded in the manifest) is the package split
exactly. The trainer has no separate validation path, and Megatron splits by document ranges.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SUFFIXES = (".py", ".md", ".rst", ".txt")
# Metadata, caches and install shims, not text anyone wrote as a package; the project's own code
# is excluded too (an editable install leaves only a finder here, but a wheel install would not).
SKIP_SUFFIXES = (".dist-info", ".egg-info", ".data")
SKIP_NAMES = {"__pycache__", "megatron_hybrid", "layer_specs", "_distutils_hack"}
EOS = "<|endoftext|>"


@dataclass
class Document:
    package: str
    path: Path  # relative to its site-packages root
    size: int


def site_packages() -> list[Path]:
    """The running interpreter's purelib and platlib (one folder in a venv)."""
    paths = {Path(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
    return sorted(p for p in paths if p.is_dir())


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def packages(root: Path) -> dict[str, list[Path]]:
    """Top-level package name -> its text files (sorted); single modules are their own package."""
    out: dict[str, list[Path]] = {}
    for entry in sorted(root.iterdir()):
        name = entry.name
        if name in SKIP_NAMES or name.endswith(SKIP_SUFFIXES) or name.startswith(("__editable__", ".")):
            continue
        if entry.is_dir():
            files = sorted(p for p in entry.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        elif entry.suffix == ".py":
            name, files = entry.stem, [entry]
        else:
            continue
        if files:
            out.setdefault(name, []).extend(files)
    return out


def is_valid_package(name: str, valid_permille: int) -> bool:
    """Deterministic across machines and Python versions (sha256, not ``hash``)."""
    return _hash(name) % 1000 < valid_permille


def split_packages(
    names: Iterable[str], valid_permille: int, sizes: dict[str, int] | None = None, min_valid_bytes: int = 0
) -> tuple[list[str], list[str]]:
    """(train, valid) package names, sorted.

    Valid: the packages whose hash falls in the lowest ``valid_permille``; then, while they hold
    fewer than ``min_valid_bytes`` of text (``sizes``), the next packages in hash order, so a
    machine whose 2% are tiny packages still gets a validation set worth measuring. Never empty.
    """
    names = sorted(set(names))
    ranked = sorted(names, key=_hash)
    valid = {n for n in names if is_valid_package(n, valid_permille)}
    held = sum((sizes or {}).get(n, 0) for n in valid)
    for name in ranked:
        if (valid and held >= min_valid_bytes) or len(valid) >= len(names) - 1:
            break
        if name not in valid:
            valid.add(name)
            held += (sizes or {}).get(name, 0)
    return [n for n in names if n not in valid], sorted(valid)


def _is_text(data: bytes) -> bool:
    return b"\x00" not in data[:8192]


def select(
    roots: list[Path], names: list[str], max_bytes: int, max_file_bytes: int, found: dict
) -> tuple[list[tuple[Path, Document]], int]:
    """Files of ``names`` in hash order of their paths until ``max_bytes``: (root, doc) pairs, bytes."""
    candidates = []
    for name in names:
        for root, path in found[name]:
            size = path.stat().st_size
            if 0 < size <= max_file_bytes:
                candidates.append((root, Document(name, path.relative_to(root), size)))
    candidates.sort(key=lambda rd: _hash(str(rd[1].path)))
    chosen, total = [], 0
    for root, doc in candidates:
        if total + doc.size > max_bytes:
            continue  # a smaller file later may still fit; keeps the cap a hard limit
        chosen.append((root, doc))
        total += doc.size
    return chosen, total


def write_jsonl(chosen: list[tuple[Path, Document]], out: Path) -> dict:
    """One JSON line per text file; binary-looking files are dropped. Returns counts."""
    docs = nbytes = 0
    per_package: dict[str, int] = {}
    with open(out, "w", encoding="utf-8") as f:
        for root, doc in chosen:
            data = (root / doc.path).read_bytes()
            if not _is_text(data):
                continue
            text = data.decode("utf-8", errors="replace")
            f.write(json.dumps({"text": text, "package": doc.package, "path": str(doc.path)}) + "\n")
            docs += 1
            nbytes += len(data)
            per_package[doc.package] = per_package.get(doc.package, 0) + len(data)
    return {"documents": docs, "bytes": nbytes, "packages": dict(sorted(per_package.items()))}


def train_bpe(train_jsonl: Path, out: Path, vocab_size: int, sample_bytes: int) -> Path:
    """Byte-level BPE on the first ``sample_bytes`` of the (hash-shuffled) train split."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    def sample():
        seen = 0
        with open(train_jsonl, encoding="utf-8") as f:
            for line in f:
                text = json.loads(line)["text"]
                seen += len(text)
                yield text
                if seen >= sample_bytes:
                    return

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],  # id 0: the end-of-document token prepare appends
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(sample(), trainer)
    tok.save(str(out))
    return out


def build(
    out: str | Path,
    roots: list[Path] | None = None,
    max_bytes: int = 400_000_000,
    max_valid_bytes: int = 8_000_000,
    min_valid_bytes: int = 2_000_000,
    max_file_bytes: int = 1_000_000,
    valid_permille: int = 20,
    tokenizer: str = "bpe",
    vocab_size: int = 16384,
    bpe_sample_bytes: int = 50_000_000,
    workers: int = 1,
    progress: bool = True,
) -> dict:
    """Select, write, (train a tokenizer,) tokenize; return and save the manifest."""
    from megatron_hybrid.data.prepare import prepare

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    roots = [Path(r) for r in (roots or site_packages())]
    found: dict[str, list[tuple[Path, Path]]] = {}
    for root in roots:
        for name, files in packages(root).items():
            found.setdefault(name, []).extend((root, f) for f in files)
    sizes = {name: sum(p.stat().st_size for _, p in files) for name, files in found.items()}
    train_names, valid_names = split_packages(found, valid_permille, sizes, min_valid_bytes)
    splits = {}
    for split, names, cap in (("train", train_names, max_bytes), ("valid", valid_names, max_valid_bytes)):
        chosen, _ = select(roots, names, cap, max_file_bytes, found)
        splits[split] = write_jsonl(chosen, out / f"{split}.jsonl")
    if splits["train"]["documents"] == 0 or splits["valid"]["documents"] == 0:
        raise ValueError(f"empty split: {splits['train']['documents']} train / {splits['valid']['documents']} valid")
    if tokenizer == "bpe":
        tokenizer = str(train_bpe(out / "train.jsonl", out / "tokenizer.json", vocab_size, bpe_sample_bytes))
    # One dataset, train documents first: the trainer's contiguous document split is the package split.
    info = prepare(
        [str(out / "train.jsonl"), str(out / "valid.jsonl")],
        str(out / "corpus"),
        tokenizer=tokenizer,
        workers=workers,
        progress=progress,
    )
    n_train, n_valid = splits["train"]["documents"], splits["valid"]["documents"]
    assert info["documents"] == n_train + n_valid, info
    valid_tokens = _tail_tokens(out / "corpus", n_valid)
    manifest = {
        "roots": [str(r) for r in roots],
        "suffixes": list(SUFFIXES),
        "valid_permille": valid_permille,
        "caps": {
            "max_bytes": max_bytes,
            "max_valid_bytes": max_valid_bytes,
            "min_valid_bytes": min_valid_bytes,
            "max_file_bytes": max_file_bytes,
        },
        "packages": {"train": len(train_names), "valid": valid_names},
        "train": splits["train"],
        "valid": splits["valid"],
        "data_path": str(out / "corpus"),
        "split": f"{n_train},{n_valid},0",
        "tokens": {"train": info["tokens"] - valid_tokens, "valid": valid_tokens},
        "tokenizer": tokenizer,
        "vocab_size": info["vocab_size"],
        "eos_id": info["eos_id"],
        "dtype": info["dtype"],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _tail_tokens(prefix: Path, n_docs: int) -> int:
    """Tokens in the last ``n_docs`` documents of an indexed dataset (the validation split)."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    dataset = IndexedDataset(str(prefix), mmap=True)  # keep it alive: its lengths are a view of its mmap
    lengths = dataset.sequence_lengths
    return int(lengths[len(lengths) - n_docs :].sum())


def load_manifest(data_dir: str | Path) -> dict:
    return json.loads((Path(data_dir) / "manifest.json").read_text())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/ladder/data", help="folder for jsonl, tokenizer, corpus.bin/.idx")
    parser.add_argument(
        "--roots", nargs="*", default=None, help="site-packages folders to read (default: this interpreter's)"
    )
    parser.add_argument("--max-bytes", type=float, default=400e6, help="cap on train text bytes")
    parser.add_argument("--max-valid-bytes", type=float, default=8e6, help="cap on validation text bytes")
    parser.add_argument(
        "--min-valid-bytes", type=float, default=2e6, help="hold out more packages (hash order) until this much text"
    )
    parser.add_argument("--max-file-bytes", type=float, default=1e6, help="skip larger files (generated tables)")
    parser.add_argument("--valid-permille", type=int, default=20, help="packages held out, per thousand (hashed)")
    parser.add_argument("--tokenizer", default="bpe", help="'bpe' (train one here), 'byte', or a tokenizer path")
    parser.add_argument("--vocab-size", type=int, default=16384, help="BPE vocabulary (incl. the eos token)")
    parser.add_argument("--bpe-sample-bytes", type=float, default=50e6, help="train text the BPE is trained on")
    parser.add_argument("--workers", type=int, default=8, help="tokenizer processes for prepare")
    args = parser.parse_args(argv)
    manifest = build(
        args.out,
        [Path(r) for r in args.roots] if args.roots else None,
        int(args.max_bytes),
        int(args.max_valid_bytes),
        int(args.min_valid_bytes),
        int(args.max_file_bytes),
        args.valid_permille,
        args.tokenizer,
        args.vocab_size,
        int(args.bpe_sample_bytes),
        args.workers,
    )
    print(json.dumps({k: v for k, v in manifest.items() if k not in ("train", "valid")}, indent=2))
    print(f"train: {manifest['train']['documents']} files, {manifest['train']['bytes'] / 1e6:.1f} MB")
    print(f"valid: {manifest['valid']['documents']} files, {manifest['valid']['bytes'] / 1e6:.1f} MB")
    return manifest


if __name__ == "__main__":
    main()
