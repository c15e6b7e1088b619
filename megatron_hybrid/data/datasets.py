"""Train/valid datasets for a run: Megatron's blended GPT datasets or OLMo-style token memmaps.

Both kinds return ``{"tokens": [s] int64, "labels": [s] int64}`` from ``seq_length + 1``
consecutive tokens, and both are deterministic functions of the seed. Indexed data goes through
``megatron.core.datasets`` (``BlendedMegatronDatasetBuilder`` + ``GPTDataset``: weighted blends,
train/valid/test split by document, shuffling and epoch wrap-around done by Megatron). Flat
``.npy`` token files (the way Dolma mixes ship) are cut into fixed windows and shuffled per epoch
here, read straight from the memmap.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from megatron_hybrid.data.checks import DataError, check_token_ids, open_indexed_tokens, open_npy_tokens


@dataclass
class Blend:
    prefixes: list[str]
    weights: list[float] | None
    format: str  # "indexed" | "npy"


def parse_blend(data_path: list, data_format: str = "auto") -> Blend:
    """Megatron's ``--data-path`` syntax: ``[prefix ...]`` or ``[w1, prefix1, w2, prefix2, ...]``."""
    items = [str(x) for entry in data_path for x in str(entry).split()]
    if not items:
        raise DataError("data_path is empty: give at least one dataset prefix or .npy file")

    def is_number(s: str) -> bool:
        try:
            float(s)
            return True
        except ValueError:
            return False

    if is_number(items[0]):
        if len(items) % 2:
            raise DataError(f"data_path {items}: weighted blends are pairs 'weight prefix'")
        weights = [float(w) for w in items[0::2]]
        prefixes = items[1::2]
    else:
        weights, prefixes = None, items
    if data_format == "auto":
        data_format = "npy" if all(p.endswith(".npy") for p in prefixes) else "indexed"
    if data_format == "indexed":
        prefixes = [p[: -len(".bin")] if p.endswith((".bin", ".idx")) else p for p in prefixes]
    if data_format == "npy" and weights is not None:
        raise DataError("weighted blends need indexed (.bin/.idx) data; .npy files are used as listed (pre-mixed)")
    return Blend(prefixes, weights, data_format)


def check_blend(blend: Blend, vocab_size: int, dtype: str | None, max_tokens: int) -> None:
    """Open every file of the blend and check its ids against the vocabulary (see checks.py)."""
    for prefix in blend.prefixes:
        tokens = open_npy_tokens(prefix, dtype) if blend.format == "npy" else open_indexed_tokens(prefix, dtype)
        check_token_ids(tokens, vocab_size, prefix if blend.format == "npy" else prefix + ".bin", max_tokens)


# ----------------------------------------------------------------------------------------------
# Flat token memmaps


def _split_fractions(split: str) -> list[float]:
    parts = [float(x) for x in split.replace("/", ",").split(",")]
    parts += [0.0] * (3 - len(parts))
    total = sum(parts)
    if total <= 0:
        raise DataError(f"split {split!r} sums to zero")
    return [p / total for p in parts]


class NpyTokenDataset(torch.utils.data.Dataset):
    """Fixed windows of ``seq_length + 1`` tokens over flat token files, reshuffled every epoch.

    The windows of all files form one pool; ``split`` assigns a seeded subset of them to train,
    valid and test. Index ``i`` of a split is epoch ``i // n`` and position ``i % n`` in that
    epoch's permutation, so the dataset is as long as asked (``num_samples``) and order depends
    only on the seed.
    """

    def __init__(self, paths, dtype, seq_length, split, which, seed, num_samples):
        self.arrays = [open_npy_tokens(p, dtype) for p in paths]
        self.seq_length = seq_length
        per_file = [max(0, (a.shape[0] - 1) // seq_length) for a in self.arrays]
        self.file_starts = np.concatenate([[0], np.cumsum(per_file)])
        total = int(self.file_starts[-1])
        if total == 0:
            raise DataError(f"{paths}: fewer than seq_length + 1 = {seq_length + 1} tokens in every file")
        fractions = _split_fractions(split)
        bounds = np.concatenate([[0], np.round(np.cumsum(fractions) * total)]).astype(np.int64)
        pool = np.random.RandomState(seed).permutation(total)
        self.windows = np.sort(pool[bounds[which] : bounds[which + 1]])
        self.seed = seed + 1000 * (which + 1)
        self.num_samples = num_samples if num_samples is not None else len(self.windows)
        self._epoch, self._order = -1, None

    def __len__(self) -> int:
        return self.num_samples if len(self.windows) else 0

    def __getstate__(self) -> dict:
        # Pickle the file names, not the tokens: a memmap pickles as a full in-memory copy.
        state = self.__dict__.copy()
        state["arrays"] = [(a.filename, a.dtype.str, a.offset, a.shape) for a in self.arrays]
        return state

    def __setstate__(self, state: dict) -> None:
        arrays = [np.memmap(f, dtype=np.dtype(d), mode="r", offset=o, shape=s) for f, d, o, s in state["arrays"]]
        self.__dict__.update(state, arrays=arrays)

    def _window(self, i: int) -> int:
        epoch, pos = divmod(i, len(self.windows))
        if epoch != self._epoch:
            self._order = np.random.RandomState((self.seed + epoch) % 2**32).permutation(len(self.windows))
            self._epoch = epoch
        return int(self.windows[self._order[pos]])

    def __getitem__(self, i: int) -> dict:
        window = self._window(int(i))
        f = int(np.searchsorted(self.file_starts, window, side="right") - 1)
        start = (window - int(self.file_starts[f])) * self.seq_length
        chunk = torch.from_numpy(np.asarray(self.arrays[f][start : start + self.seq_length + 1], dtype=np.int64))
        return {"tokens": chunk[:-1], "labels": chunk[1:]}


# ----------------------------------------------------------------------------------------------
# Megatron indexed datasets


class _TokenizerInfo:
    """What GPTDataset reads from a tokenizer: the eod id and vocabulary size (no text needed)."""

    def __init__(self, eod: int, vocab_size: int):
        self.eod = eod
        self.eos = eod
        self.vocab_size = vocab_size
        self.unique_identifiers = {"eod": eod, "vocab_size": vocab_size}


class _GPTSamples(torch.utils.data.Dataset):
    """GPTDataset (or its blend) trimmed to the two fields the trainer uses."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        sample = self.dataset[int(i)]
        return {"tokens": sample["tokens"].long(), "labels": sample["labels"].long()}


def _indexed_datasets(blend: Blend, seq_length, split, seed, sizes, eod, vocab_size, cache):
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    config = GPTDatasetConfig(
        random_seed=seed,
        sequence_length=seq_length,
        blend=(blend.prefixes, blend.weights),
        split=split,
        path_to_cache=cache,
        tokenizer=_TokenizerInfo(eod, vocab_size),
        reset_position_ids=False,  # stage 1: no document masking
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,
        mmap_bin_files=True,
    )
    built = BlendedMegatronDatasetBuilder(GPTDataset, sizes, lambda: True, config).build()
    return [(_GPTSamples(d) if d is not None else None) for d in built[:2]]


def _documents_per_split(prefix: str, split: str) -> list[int]:
    """How many documents Megatron's split gives train/valid/test for one indexed dataset.

    Megatron loops forever building a split with zero documents and a sample request, so the
    counts are checked first (same cumulative rounding as ``BlendedMegatronDatasetBuilder``).
    """
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    n = IndexedDataset(prefix, mmap=True).sequence_lengths.shape[0]
    edges = np.concatenate([[0.0], np.cumsum(_split_fractions(split))])
    return [int(round(edges[i + 1] * n)) - int(round(edges[i] * n)) for i in range(3)]


def build_datasets(cfg, vocab_size: int, eod: int, train_samples: int, valid_samples: int, cache_dir: str):
    """(train, valid) datasets for the run (valid may be None when the split gives it nothing).

    Each dataset carries ``recipe``, a picklable function that rebuilds it: loader worker
    processes started with ``spawn`` (DALI's) call it instead of receiving the dataset pickled,
    which would copy Megatron's memory-mapped sample indices (gigabytes at 7B scale).
    """
    train, valid = _build(cfg, vocab_size, eod, train_samples, valid_samples, cache_dir, check=True)
    for which, ds in enumerate((train, valid)):
        if ds is not None:
            ds.recipe = partial(_rebuild, cfg, vocab_size, eod, train_samples, valid_samples, cache_dir, which)
    return train, valid


def _rebuild(cfg, vocab_size, eod, train_samples, valid_samples, cache_dir, which):
    """The same dataset again, from Megatron's on-disk index cache; files were checked already."""
    return _build(cfg, vocab_size, eod, train_samples, valid_samples, cache_dir, check=False)[which]


def _build(cfg, vocab_size, eod, train_samples, valid_samples, cache_dir, check: bool):
    blend = parse_blend(cfg.data_path, cfg.data_format)
    if check:
        check_blend(blend, vocab_size, cfg.data_dtype, cfg.data_check_tokens)
    if blend.format == "npy":
        train = NpyTokenDataset(blend.prefixes, cfg.data_dtype, cfg.seq_length, cfg.split, 0, cfg.seed, train_samples)
        valid = NpyTokenDataset(blend.prefixes, cfg.data_dtype, cfg.seq_length, cfg.split, 1, cfg.seed, valid_samples)
        return train, (valid if len(valid.windows) and valid_samples else None)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    counts = {p: _documents_per_split(p, cfg.split) for p in blend.prefixes}
    for prefix, (n_train, n_valid, _) in counts.items():
        if n_train == 0:
            raise DataError(
                f"{prefix}: split {cfg.split!r} leaves no training documents ({sum(counts[prefix])} in all)"
            )
        if n_valid == 0 and valid_samples:
            if check:
                warnings.warn(
                    f"{prefix}: split {cfg.split!r} leaves no validation documents; validation is off", stacklevel=2
                )
            valid_samples = 0
    train, valid = _indexed_datasets(
        blend,
        cfg.seq_length,
        cfg.split,
        cfg.seed,
        [train_samples, valid_samples, 0],
        eod,
        vocab_size,
        cache_dir,
    )
    if train is None:
        raise DataError(f"split {cfg.split!r} leaves no training data")
    return train, (valid if valid_samples else None)
