"""Vocabulary-free text ids: words hashed into buckets, for tiny/offline models that read text.

crc32, not hash(): Python salts str hashes per process, and ids must be the same in every process
and after a reload, so a saved model reads its instructions as it did in training.
"""

from __future__ import annotations

import re
import zlib

import torch

_WORD = re.compile(r"\w+")


def word_hashes(text: str, buckets: int, max_len: int) -> list[int]:
    """The first `max_len` lowercased words of `text`, each hashed into [0, buckets)."""
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    return [zlib.crc32(w.encode()) % buckets for w in _WORD.findall(text.lower())[:max_len]]


def hashed_word_ids(texts: list[str], buckets: int, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """texts -> (ids (B, L) LongTensor, attention_mask (B, L)), right-padded with id 0.

    Words land in [1, buckets): 0 is kept for padding. L is the longest text's word count (at most
    `max_len`, at least 1 so a batch of empty texts still has a shape); an empty text is all padding."""
    if buckets < 2:
        raise ValueError(f"buckets must be >= 2 (id 0 is padding), got {buckets}")
    rows = [[h + 1 for h in word_hashes(t, buckets - 1, max_len)] for t in texts]
    length = max([len(r) for r in rows] + [1])
    ids = torch.zeros(len(texts), length, dtype=torch.long)
    mask = torch.zeros(len(texts), length, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask
