"""CIDEr-D reward, vectorised with numpy.

Per sample it equals pycocoevalcap's `Cider` (which is CIDEr-D: tf-idf n-gram vectors, candidate
weights clipped at the reference's, Gaussian penalty on the length difference, mean over n-gram
orders and references, x10) on the same whitespace-tokenized text. Instead of the reference's
per-pair dict loops, every sentence of the batch becomes a flat array of word ids, every n-gram an
integer id, and tf-idf vectors, norms and clipped dot products are sparse (sentence, n-gram) rows
reduced with `np.unique` / `np.bincount` / `np.searchsorted`.

Two quirks of the reference are kept on purpose so that scores match it:
- the "length" in the length penalty is the number of bigrams (words - 1, at least 0);
- without `fit`, document frequencies and the log corpus size come from the references of the
  call itself (what `Cider().compute_score` does on that corpus).
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import numpy as np
import torch

from rsforge.rewards.configs import CiderDConfig


def _encode(sentences: list[str], vocab: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Whitespace-split `sentences` into one flat array of word ids (new words are added to
    `vocab`) and the number of words of each sentence."""
    split = [s.split() for s in sentences]
    lengths = np.fromiter(map(len, split), dtype=np.int64, count=len(split))
    words = np.fromiter(
        (vocab.setdefault(w, len(vocab)) for w in chain.from_iterable(split)),
        dtype=np.int64,
        count=int(lengths.sum()),
    )
    return words, lengths


def _ngram_ids(
    words: np.ndarray, ends: np.ndarray, n: int, vocab_size: int, tables: list[np.ndarray] | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """For each order k = 1..n, the id of the k-gram that starts at each position (-1 where it would
    run past the end of its sentence) and the sorted keys that define those ids (id = index in keys).

    A k-gram's key is `id of its (k-1)-gram prefix * vocab_size + last word`, so keys stay far below
    int64 limits whatever the vocabulary. Without `tables` the keys are built from `words`; with
    `tables` (keys from `fit`) ids are looked up in them, and words >= `vocab_size` (unknown to the
    fitted vocabulary), like any n-gram absent from the tables, get -1.
    """
    ids = np.where(words < vocab_size, words, -1)
    all_ids, all_keys = [ids], [np.arange(vocab_size, dtype=np.int64)]
    for k in range(2, n + 1):
        start = np.flatnonzero((ids >= 0) & (np.arange(len(words)) + k - 1 < ends))
        last = words[start + k - 1]
        key = ids[start] * vocab_size + last
        new = np.full(len(words), -1, dtype=np.int64)
        if tables is None:
            keys, inverse = np.unique(key, return_inverse=True)
            new[start] = inverse
        else:
            keys = tables[k - 1]
            at = np.minimum(np.searchsorted(keys, key), max(len(keys) - 1, 0))
            hit = (last < vocab_size) & (keys[at] == key) if len(keys) else np.zeros(len(key), bool)
            new[start[hit]] = at[hit]
        ids = new
        all_ids.append(ids)
        all_keys.append(keys)
    return all_ids, all_keys


def _unique(a: np.ndarray) -> np.ndarray:
    """Sorted unique values; np.unique's default hash-based path is far slower on int64 keys."""
    a = np.sort(a)
    return a[np.concatenate([[True], a[1:] != a[:-1]])] if len(a) else a


def _sentence_index(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per word position: the index of its sentence and the (exclusive) end offset of that sentence."""
    return np.repeat(np.arange(len(lengths)), lengths), np.repeat(np.cumsum(lengths), lengths)


def _check_references(references: list[list[str]], what: str) -> np.ndarray:
    n_refs = np.array([len(r) for r in references], dtype=np.int64)
    empty = np.flatnonzero(n_refs == 0)
    if len(empty):
        raise ValueError(f"{what}: sample {int(empty[0])} has no reference (CIDEr-D needs at least one)")
    return n_refs


class CiderD:
    """CIDEr-D reward: `(candidates, references, extras) -> float32 tensor (B,)` of raw scores.

    Text is split on whitespace only: tokenize (and lowercase) upstream, e.g. with the same
    PTB tokenization as the evaluation. `n` is the longest n-gram (the reference implementation is
    only defined for its default n=4), `sigma` the length-penalty width.
    """

    def __init__(self, config: CiderDConfig) -> None:
        self.config = config
        # Set by fit(): fitted vocabulary, per-order n-gram keys and document frequencies, log(#images).
        self._vocab: dict[str, int] | None = None
        self._keys: list[np.ndarray] = []
        self._df: list[np.ndarray] = []
        self._log_n = 0.0

    @property
    def fitted(self) -> bool:
        return self._vocab is not None

    def fit(self, corpus_references: list[list[str]]) -> CiderD:
        """Fix document frequencies from a training corpus (one list of references per image), as
        SCST does, so a reward no longer depends on which samples share its batch."""
        if not corpus_references:
            raise ValueError("CiderD.fit: the corpus is empty")
        n_refs = _check_references(corpus_references, "CiderD.fit")
        vocab: dict[str, int] = {}
        words, lengths = _encode(list(chain.from_iterable(corpus_references)), vocab)
        sent, ends = _sentence_index(lengths)
        image = np.repeat(np.arange(len(corpus_references)), n_refs)[sent]
        ids, keys = _ngram_ids(words, ends, self.config.n, len(vocab))
        self._df = []
        for order_ids, order_keys in zip(ids, keys):
            at = order_ids >= 0
            # An n-gram counts once per image however many of its references contain it.
            pairs = _unique(image[at] * len(order_keys) + order_ids[at])
            self._df.append(np.bincount(pairs % len(order_keys), minlength=len(order_keys)))
        self._vocab, self._keys = vocab, keys
        self._log_n = float(np.log(len(corpus_references)))
        return self

    def __call__(
        self, candidates: list[str], references: list[list[str]], extras: dict[str, Any] | None = None
    ) -> torch.Tensor:
        """Score each candidate against its references. `extras` is accepted for the reward
        contract and unused."""
        if isinstance(candidates, str):
            raise TypeError("CiderD: candidates must be a list of strings, got one string")
        if len(candidates) != len(references):
            raise ValueError(
                f"CiderD: {len(candidates)} candidates but {len(references)} lists of references"
            )
        return torch.from_numpy(self._scores(list(candidates), references).astype(np.float32))

    def _scores(self, candidates: list[str], references: list[list[str]]) -> np.ndarray:
        n, batch = self.config.n, len(candidates)
        if batch == 0:
            return np.zeros(0)
        n_refs = _check_references(references, "CiderD")
        image_of_ref = np.repeat(np.arange(batch), n_refs)
        # Sentences 0..B-1 are the candidates, then every reference in order.
        vocab = dict(self._vocab) if self._vocab is not None else {}
        words, lengths = _encode(candidates + list(chain.from_iterable(references)), vocab)
        sent, ends = _sentence_index(lengths)
        ids, keys = _ngram_ids(words, ends, n, len(vocab))

        # One id space over all orders: gram = offset of its order + id within the order.
        sizes = np.array([len(k) for k in keys])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        n_grams = int(sizes.sum())
        at = [order_ids >= 0 for order_ids in ids]
        entry = np.unique(np.concatenate([sent[a] * n_grams + o + i[a] for a, o, i in zip(at, offsets, ids)]),
                          return_counts=True)
        # Sparse rows (sentence, gram, term frequency), sorted by sentence then gram.
        row, gram, tf = entry[0] // n_grams, entry[0] % n_grams, entry[1]
        order_of_gram = np.repeat(np.arange(n), sizes)

        if self._vocab is not None:
            fit_ids, _ = _ngram_ids(words, ends, n, len(self._vocab), tables=self._keys)
            df = np.zeros(n_grams)
            for k in range(n):
                known = fit_ids[k] >= 0
                df[offsets[k] + ids[k][known]] = self._df[k][fit_ids[k][known]]
            log_n = self._log_n
        else:
            is_ref = row >= batch
            image = image_of_ref[row[is_ref] - batch]
            pairs = _unique(image * n_grams + gram[is_ref])
            df = np.bincount(pairs % n_grams, minlength=n_grams).astype(np.float64)
            log_n = float(np.log(batch))
        weight = tf * (log_n - np.log(np.maximum(df, 1.0)))[gram]

        n_sent = len(lengths)
        norm = np.sqrt(np.bincount(row * n + order_of_gram[gram], weights=weight**2, minlength=n_sent * n))
        norm = norm.reshape(n_sent, n)

        # Clipped dot products: find each reference entry's gram among its candidate's entries.
        is_cand = row < batch
        cand_key = row[is_cand] * n_grams + gram[is_cand]  # sorted, since entries are
        ref_row = row[~is_cand] - batch
        ref_gram, ref_weight = gram[~is_cand], weight[~is_cand]
        ref_key = image_of_ref[ref_row] * n_grams + ref_gram
        at_cand = np.minimum(np.searchsorted(cand_key, ref_key), max(len(cand_key) - 1, 0))
        shared = cand_key[at_cand] == ref_key if len(cand_key) else np.zeros(len(ref_key), bool)
        cand_weight, ref_w = weight[is_cand][at_cand[shared]], ref_weight[shared]
        dot = np.bincount(
            ref_row[shared] * n + order_of_gram[ref_gram[shared]],
            weights=np.minimum(cand_weight, ref_w) * ref_w,
            minlength=len(image_of_ref) * n,
        ).reshape(-1, n)

        # Weights are >= 0, so a zero norm means a zero dot product: 0/0 -> 0 as in the reference.
        denom = norm[image_of_ref] * norm[batch:]
        cosine = np.divide(dot, denom, out=np.zeros_like(dot), where=denom != 0)
        bigrams = np.maximum(lengths - 1, 0)
        delta = (bigrams[image_of_ref] - bigrams[batch:]).astype(np.float64)
        penalty = np.exp(-(delta**2) / (2 * self.config.sigma**2))
        per_ref = cosine.mean(axis=1) * penalty
        return np.bincount(image_of_ref, weights=per_ref, minlength=batch) / n_refs * 10.0
