"""Fail bad training data before training starts, with a message that names the file.

Caught here: missing or unreadable files, a token dtype that does not match what the run says
(or cannot hold the vocabulary), a file whose size is not a whole number of tokens, and token ids
>= the model's vocabulary (sampled: up to ``max_tokens`` per file, spread over the whole file,
so a 100 GB shard costs a few reads, not a scan).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

NPY_MAGIC = b"\x93NUMPY"


class DataError(ValueError):
    """Training data that cannot be used; the message names the file and what is wrong."""


def check_readable(path: str | Path) -> None:
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    if not path.is_file():
        raise DataError(f"data path {path} is not a file")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise DataError(f"data file {path} cannot be read: {e}") from None


def open_npy_tokens(path: str | Path, dtype: str | None) -> np.ndarray:
    """A flat token file as a read-only memmap (no copy): real ``.npy`` or OLMo's raw arrays."""
    path = Path(path)
    check_readable(path)
    with open(path, "rb") as f:
        has_header = f.read(6) == NPY_MAGIC
    if has_header:
        arr = np.load(path, mmap_mode="r")
        if arr.ndim != 1:
            raise DataError(f"{path}: expected a flat 1-D token array, got shape {arr.shape}")
        if dtype is not None and arr.dtype != np.dtype(dtype):
            raise DataError(f"{path}: file holds {arr.dtype} tokens but data_dtype is {dtype}")
        return arr
    if dtype is None:
        raise DataError(f"{path}: raw token file (no .npy header): set data_dtype (uint16 or uint32)")
    itemsize = np.dtype(dtype).itemsize
    size = os.path.getsize(path)
    if size % itemsize:
        raise DataError(f"{path}: size {size} bytes is not a multiple of {dtype} ({itemsize} bytes): wrong data_dtype?")
    if size == 0:
        raise DataError(f"{path}: empty token file")
    return np.memmap(path, dtype=dtype, mode="r")


def open_indexed_tokens(prefix: str, dtype: str | None) -> np.ndarray:
    """The ``.bin`` of a Megatron indexed dataset as a flat memmap, after checking ``.idx``."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    for suffix in (".bin", ".idx"):
        check_readable(prefix + suffix)
    try:
        index_dtype = IndexedDataset(prefix, mmap=True).index.dtype
    except Exception as e:  # a truncated or foreign .idx
        raise DataError(f"{prefix}.idx cannot be read as a Megatron index: {e}") from None
    if dtype is not None and np.dtype(index_dtype) != np.dtype(dtype):
        raise DataError(
            f"{prefix}: indexed dataset holds {np.dtype(index_dtype).name} tokens but data_dtype is {dtype}"
        )
    return np.memmap(prefix + ".bin", dtype=index_dtype, mode="r")


def check_token_ids(tokens: np.ndarray, vocab_size: int, name: str, max_tokens: int = 1 << 24) -> None:
    """Raise DataError if any sampled id is >= vocab_size (or if the dtype cannot hold the vocab)."""
    if np.issubdtype(tokens.dtype, np.integer) and np.iinfo(tokens.dtype).max + 1 < vocab_size:
        # Not fatal for correctness, but a vocabulary larger than the dtype means the file was
        # written for another tokenizer.
        raise DataError(f"{name}: {tokens.dtype} tokens cannot hold the model's vocabulary of {vocab_size}")
    n = tokens.shape[0]
    block = 1 << 16
    if n <= max_tokens:
        spans = [(0, n)]
    else:
        count = max(1, max_tokens // block)
        starts = np.linspace(0, n - block, count).astype(np.int64)
        spans = [(int(s), int(s) + block) for s in starts]
    for start, stop in spans:
        chunk = np.asarray(tokens[start:stop])
        if chunk.size == 0:
            continue
        top = int(chunk.max())
        if top >= vocab_size:
            at = start + int(np.argmax(chunk >= vocab_size))
            raise DataError(
                f"{name}: token id {top} at position {at} is >= the model's vocab size {vocab_size} "
                f"(data tokenized with another tokenizer, or read with the wrong dtype)"
            )
        if np.issubdtype(chunk.dtype, np.signedinteger) and int(chunk.min()) < 0:
            raise DataError(f"{name}: negative token id {int(chunk.min())} (wrong dtype?)")
