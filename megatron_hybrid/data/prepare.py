"""Tokenize raw text into a Megatron indexed dataset (``PREFIX.bin`` + ``PREFIX.idx``).

    python -m megatron_hybrid.data.prepare --input data/raw --output data/mix --tokenizer byte
    python -m megatron_hybrid.data.prepare --input a.jsonl b.jsonl --output data/dolma \\
        --tokenizer /path/to/dolma2-tokenizer --workers 16

Inputs are files or folders (searched recursively): ``.jsonl``/``.json`` lines give one document
per line (the ``--json-key`` field), any other file is one document. Each document is followed
by the end-of-document token. Documents are tokenized in parallel worker processes but written
in input order, so the output does not depend on the worker count.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from megatron_hybrid.data.tokenizer import load_tokenizer

JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")


def list_inputs(inputs: list[str], suffixes: list[str] | None) -> list[Path]:
    """Files named or found under the folders named, sorted for a deterministic order."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file())
            files.extend(p for p in found if not suffixes or p.suffix in suffixes)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"input {item!r} does not exist")
    if not files:
        raise FileNotFoundError(f"no input files found in {inputs} (suffixes {suffixes})")
    return files


def iter_documents(files: list[Path], json_key: str) -> Iterator[str]:
    for path in files:
        if path.suffix in JSON_SUFFIXES:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line_no, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        yield json.loads(line)[json_key]
                    except (json.JSONDecodeError, KeyError) as e:
                        raise ValueError(f"{path}:{line_no}: not a JSON object with key {json_key!r} ({e})") from None
        else:
            yield path.read_text(encoding="utf-8", errors="replace")


_TOKENIZER = None


def _init_worker(spec: str, eos_id: int | None) -> None:
    global _TOKENIZER
    _TOKENIZER = load_tokenizer(spec, eos_id)


def _encode(text: str) -> np.ndarray:
    ids = _TOKENIZER.encode(text)
    ids.append(_TOKENIZER.eos_id)
    return np.asarray(ids, dtype=np.int64)


def token_dtype(vocab_size: int) -> type:
    """The smallest dtype Megatron's index format stores that holds every id."""
    return np.uint16 if vocab_size <= 65536 else np.int32


def prepare(
    inputs: list[str],
    output: str,
    tokenizer: str = "byte",
    workers: int = 1,
    json_key: str = "text",
    suffixes: list[str] | None = None,
    eos_id: int | None = None,
    max_documents: int | None = None,
    progress: bool = True,
) -> dict:
    """Write ``output.bin``/``output.idx``; return a summary (documents, tokens, dtype, vocab)."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    files = list_inputs(inputs, suffixes)
    tok = load_tokenizer(tokenizer, eos_id)
    dtype = token_dtype(tok.vocab_size)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_bin, tmp_idx = out.with_name(out.name + ".bin.tmp"), out.with_name(out.name + ".idx.tmp")
    builder = IndexedDatasetBuilder(str(tmp_bin), dtype=dtype)
    docs = iter_documents(files, json_key)
    if max_documents is not None:
        docs = (d for i, d in zip(range(max_documents), docs))
    bar = _progress(progress, files)
    n_docs = n_tokens = 0
    pool = mp.get_context("spawn").Pool(workers, _init_worker, (tokenizer, eos_id)) if workers > 1 else None
    try:
        if pool is None:
            _init_worker(tokenizer, eos_id)
            encoded = map(_encode, docs)
        else:
            encoded = pool.imap(_encode, docs, chunksize=16)  # imap keeps input order
        for ids in encoded:
            if ids.size and int(ids.max()) >= np.iinfo(dtype).max + 1:
                raise ValueError(f"token id {int(ids.max())} does not fit {np.dtype(dtype).name}")
            builder.add_document(ids, [ids.size])
            n_docs += 1
            n_tokens += ids.size
            bar.update(1)
    finally:
        if pool is not None:
            pool.terminate()
        bar.close()
    builder.finalize(str(tmp_idx))
    # Rename last, so a half-written dataset never looks complete.
    tmp_bin.replace(out.with_name(out.name + ".bin"))
    tmp_idx.replace(out.with_name(out.name + ".idx"))
    return {
        "prefix": str(out),
        "documents": n_docs,
        "tokens": n_tokens,
        "dtype": np.dtype(dtype).name,
        "vocab_size": tok.vocab_size,
        "eos_id": tok.eos_id,
        "tokenizer": tok.name,
    }


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(enabled: bool, files: list[Path]):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(desc=f"tokenizing {len(files)} files", unit=" docs", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", nargs="+", required=True, help="files or folders (recursive) of text/.jsonl")
    parser.add_argument("--output", required=True, help="output prefix: writes PREFIX.bin and PREFIX.idx")
    parser.add_argument(
        "--tokenizer", default="byte", help="'byte' or a path to a tokenizers .json / HF tokenizer folder"
    )
    parser.add_argument("--workers", type=int, default=max(1, mp.cpu_count() // 2), help="tokenizer processes")
    parser.add_argument("--json-key", default="text", help="field of each .jsonl line that holds the document")
    parser.add_argument(
        "--suffixes", nargs="*", default=None, help="only files with these suffixes in folders (e.g. .py .txt)"
    )
    parser.add_argument("--eos-id", type=int, default=None, help="end-of-document id; default: the tokenizer's eos")
    parser.add_argument("--max-documents", type=int, default=None, help="stop after this many documents")
    args = parser.parse_args(argv)
    summary = prepare(
        args.input,
        args.output,
        args.tokenizer,
        args.workers,
        args.json_key,
        args.suffixes,
        args.eos_id,
        args.max_documents,
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
