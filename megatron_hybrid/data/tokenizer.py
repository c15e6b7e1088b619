"""Tokenizers for ``prepare``: a built-in byte-level one, or any tokenizers/transformers one by path.

The byte-level tokenizer needs no files, which is what lets ``make smoke`` run on a machine with
nothing prepared: ids 0..255 are bytes, 256 is end-of-document.
"""

from __future__ import annotations

from pathlib import Path


class ByteTokenizer:
    """UTF-8 bytes as ids; ``eos_id`` = 256; vocab 257."""

    name = "byte"
    eos_id = 256
    vocab_size = 257

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8", errors="replace"))


class HFTokenizer:
    """A ``tokenizers`` JSON file or a ``transformers`` tokenizer folder/name given by path."""

    def __init__(self, path: str, eos_id: int | None = None):
        self.name = str(path)
        p = Path(path)
        if p.is_file() and p.suffix == ".json":
            from tokenizers import Tokenizer

            self._tok = Tokenizer.from_file(str(p))
            self._encode = lambda text: self._tok.encode(text, add_special_tokens=False).ids
            self.vocab_size = self._tok.get_vocab_size()
            guess = next(
                (
                    self._tok.token_to_id(t)
                    for t in ("<|endoftext|>", "</s>", "<eos>")
                    if self._tok.token_to_id(t) is not None
                ),
                None,
            )
        else:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(str(path))
            self._encode = lambda text: self._tok.encode(text, add_special_tokens=False)
            self.vocab_size = len(self._tok)
            guess = self._tok.eos_token_id
        self.eos_id = eos_id if eos_id is not None else guess
        if self.eos_id is None:
            raise ValueError(f"tokenizer {path}: no end-of-document token found; pass --eos-id")

    def encode(self, text: str) -> list[int]:
        return self._encode(text)


def load_tokenizer(spec: str, eos_id: int | None = None):
    """``"byte"`` or a path to a tokenizer (the dolma2 tokenizer for real runs)."""
    if spec == "byte":
        return ByteTokenizer()
    if not Path(spec).exists() and "/" not in spec:
        raise FileNotFoundError(f"tokenizer {spec!r}: not 'byte' and no such file or folder")
    return HFTokenizer(spec, eos_id)
