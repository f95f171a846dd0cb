"""CIDEr-D reward, vectorised with numpy.

Per sample it equals pycocoevalcap's `Cider` (which is CIDEr-D: tf-idf n-gram vectors, candidate
weights clipped at the reference's, Gaussian penalty on the length difference, mean over n-gram
orders and references, x10) on the same whitespace-tokenized text.

Instead of the reference's per-pair dict loops: all sentences of a batch are split in one call,
words and n-grams become integer ids, and one sort of (image, n-gram, sentence) keys lines up every
reference's n-gram with the same n-gram of its candidate, so tf-idf weights, norms and clipped dot
products are a few `np.bincount`s.

Two details of the reference are kept on purpose so that scores match it:
- the "length" in the length penalty is the number of bigrams (words - 1, at least 0);
- without `fit`, document frequencies and the log corpus size come from the references of the
  call itself (what `Cider().compute_score` does on that corpus).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import chain, count
from typing import Any

import numpy as np
import torch

from rsforge.core.interfaces import Reward
from rsforge.rewards.common import check_batch
from rsforge.rewards.configs import CiderDConfig


def _tokenize(sentences: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Whitespace-split every sentence: the word ids of all words in order (T,), the number of words
    of each sentence (S,), and the vocabulary (the word of each id)."""
    # One split of the joined text is much cheaper than one per sentence. The separator token
    # must not occur inside any sentence, so it is grown until it does not.
    text = "\n".join(sentences)
    sep = "\x00"
    while sep in text:
        sep += "\x00"
    tokens = f" {sep} ".join(sentences).split()
    # Ids in order of first appearance, assigned in C: a missing word gets the counter's next value.
    vocab: defaultdict[str, int] = defaultdict(count().__next__)
    ids = np.fromiter(map(vocab.__getitem__, tokens), dtype=np.int64, count=len(tokens))
    # The separator keeps an id of its own that no word position uses.
    is_sep = ids == vocab.get(sep, -1)
    lengths = np.diff(np.concatenate([[-1], np.flatnonzero(is_sep), [len(tokens)]])) - 1
    return ids[~is_sep], lengths, list(vocab)


def _ngram_ids(
    words: np.ndarray, lengths: np.ndarray, n: int, vocab_size: int
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """For each order k = 1..n: the positions where a k-gram starts inside one sentence, the k-gram's
    compact id there, and the sorted keys that define those ids (id = index in keys).

    A k-gram's key is `id of its (k-1)-gram prefix * vocab_size + id of its last word`, so keys stay
    far below int64 limits whatever the vocabulary.
    """
    sentence_end = np.repeat(np.cumsum(lengths), lengths)
    starts, ids, keys = [np.arange(len(words))], [words], [np.arange(vocab_size)]
    for k in range(2, n + 1):
        keep = starts[-1] + k - 1 < sentence_end[starts[-1]]
        start = starts[-1][keep]
        order_keys, order_ids = _compact(ids[-1][keep] * vocab_size + words[start + k - 1])
        starts.append(start)
        ids.append(order_ids)
        keys.append(order_keys)
    return starts, ids, keys


def _run_starts(a: np.ndarray) -> np.ndarray:
    """Mask of the elements of sorted `a` that differ from their predecessor (the first always does)."""
    return np.concatenate([a[:1] == a[:1], a[1:] != a[:-1]])


def _run_ends(a: np.ndarray) -> np.ndarray:
    """Mask of the elements of sorted `a` that differ from their successor (the last always does)."""
    return np.concatenate([a[1:] != a[:-1], a[-1:] == a[-1:]])


def _compact(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(values, return_inverse=True)` for non-negative int64 values, about twice as fast:
    one sort of (value, position) bit-packed into int64 instead of an argsort."""
    size = len(values)
    shift = max(size - 1, 1).bit_length()
    if size == 0 or int(values.max()) >= 1 << (63 - shift):  # packing would overflow
        return np.unique(values, return_inverse=True)
    packed = np.sort((values << shift) | np.arange(size))
    value = packed >> shift
    first = _run_starts(value)
    inverse = np.empty(size, dtype=np.int64)
    inverse[packed & ((1 << shift) - 1)] = np.cumsum(first) - 1
    return value[first], inverse


def _counts(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique values of `a` and how often each occurs."""
    a = np.sort(a)
    first = np.flatnonzero(_run_starts(a))
    return a[first], np.diff(np.append(first, len(a)))


def _unique(a: np.ndarray) -> np.ndarray:
    """Sorted unique values (np.unique's default hash-based path is far slower on int64 keys)."""
    a = np.sort(a)
    return a[_run_starts(a)]


def _lookup(table: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of each query in the sorted `table`, -1 where absent."""
    found = np.full(len(queries), -1, dtype=np.int64)
    if len(table) == 0:
        return found
    order = np.argsort(queries)  # searchsorted is much faster on sorted queries
    at = np.minimum(np.searchsorted(table, queries[order]), len(table) - 1)
    hit = table[at] == queries[order]
    found[order[hit]] = at[hit]
    return found


def _check_references(references: list[list[str]], what: str) -> np.ndarray:
    n_refs = np.array([len(r) for r in references], dtype=np.int64)
    empty = np.flatnonzero(n_refs == 0)
    if len(empty):
        raise ValueError(f"{what}: sample {int(empty[0])} has no reference (CIDEr-D needs at least one)")
    return n_refs


@dataclass(frozen=True)
class _CorpusStats:
    """Document frequencies fixed by `CiderD.fit`, in the n-gram id space of the fitted corpus."""

    vocab: dict[str, int]  # word -> id
    keys: list[np.ndarray]  # per order, the sorted n-gram keys (see `_ngram_ids`)
    df: list[np.ndarray]  # per order, the number of images whose references contain each n-gram
    log_n: float  # log(number of images)

    @property
    def offsets(self) -> np.ndarray:
        """Where each order starts in the corpus's global n-gram ids (orders concatenated)."""
        sizes = np.array([len(k) for k in self.keys])
        return np.cumsum(sizes) - sizes

    def fit_ids(self, vocab: list[str], keys: list[np.ndarray]) -> list[np.ndarray]:
        """Per order, the corpus id of each n-gram of a batch given by its `vocab` and `keys`
        (-1 for n-grams the corpus never saw)."""
        word_fit = np.array([self.vocab.get(w, -1) for w in vocab], dtype=np.int64)
        fit_ids, out = word_fit, []
        for k, order_keys in enumerate(keys):
            if k > 0:  # a k-gram is known iff its prefix and last word are, and the pair is in the table
                prefix, last = np.divmod(order_keys, max(len(vocab), 1))
                fit_prefix, fit_last = fit_ids[prefix], word_fit[last]
                known = np.flatnonzero((fit_prefix >= 0) & (fit_last >= 0))
                fit_ids = np.full(len(order_keys), -1, dtype=np.int64)
                fit_ids[known] = _lookup(self.keys[k], fit_prefix[known] * len(self.vocab) + fit_last[known])
            out.append(fit_ids)
        return out

    def document_frequency(self, fit_ids: list[np.ndarray]) -> np.ndarray:
        """Fitted document frequency of each n-gram given by its `fit_ids` (0 where unseen), orders
        concatenated like the batch's n-gram ids."""
        dfs = []
        for k, ids in enumerate(fit_ids):
            df = np.zeros(len(ids))
            df[ids >= 0] = self.df[k][ids[ids >= 0]]
            dfs.append(df)
        return np.concatenate(dfs)


@dataclass(frozen=True)
class _ReferenceBank:
    """The tf-idf vectors of every reference of the fitted corpus, computed once by `fit`.

    With document frequencies fixed, a reference's vector never changes, and SCST scores the same
    references again and again (K rollouts and the greedy decode per image, every epoch). So a call
    whose reference lists are corpus images only builds its candidates' vectors and looks the
    references' up here. Per (image, n-gram) the weights of the image's references sit in one dense
    row (0 where a reference lacks the n-gram), so one lookup per candidate n-gram gives all of them.
    """

    image_of: dict[tuple[str, ...], int]  # reference list -> corpus image
    n_refs: np.ndarray  # (images,) references per image
    key: np.ndarray  # sorted unique (image * n_grams + corpus gram) of the references' n-grams
    weight: np.ndarray  # (keys, most references) tf-idf weight of each key's n-gram in each reference
    norm: np.ndarray  # (images, most references, n) vector norms; 0 past an image's references
    bigrams: np.ndarray  # (images, most references) lengths as the length penalty counts them
    n_grams: int  # number of corpus n-grams, all orders


class CiderD(Reward):
    """CIDEr-D reward: `(candidates, references, extras) -> float32 tensor (B,)` of raw scores.

    Text is split on whitespace only: tokenize (and lowercase) upstream, e.g. with the same PTB
    tokenization as the evaluation. `config.n` is the longest n-gram (the reference implementation is
    only defined for its default n=4), `config.sigma` the width of the length penalty.

    Document frequencies: without `fit`, from the references of each call (pycocoevalcap's
    `compute_score` on that batch). After `fit(training_references)` (what SCST does, and what the
    kernel's `RewardSet` calls with the training split's references), from that corpus, so that a
    sample's score no longer depends on its batch; the references of the corpus are then cached as
    tf-idf vectors and only the candidates are counted per call.
    """

    needs_corpus = True  # the trainer's RewardSet calls fit(training references) before training

    def __init__(self, config: CiderDConfig) -> None:
        self.config = config
        self._corpus: _CorpusStats | None = None
        self._bank: _ReferenceBank | None = None

    @property
    def fitted(self) -> bool:
        return self._corpus is not None

    def fit(self, corpus_references: list[list[str]]) -> CiderD:
        """Fix document frequencies from a training corpus (one list of references per image), as
        SCST does, so that a sample's reward no longer depends on the rest of its batch."""
        if not corpus_references:
            raise ValueError("CiderD.fit: the corpus is empty")
        n_refs = _check_references(corpus_references, "CiderD.fit")
        words, lengths, vocab = _tokenize(list(chain.from_iterable(corpus_references)))
        starts, ids, keys = _ngram_ids(words, lengths, self.config.n, len(vocab))
        sentence_of_word = np.repeat(np.arange(len(lengths)), lengths)
        image_of_sentence = np.repeat(np.arange(len(corpus_references)), n_refs)
        df = []
        for start, order_ids, order_keys in zip(starts, ids, keys, strict=True):
            # An n-gram counts once per image however many of the image's references contain it.
            pairs = _unique(image_of_sentence[sentence_of_word[start]] * len(order_keys) + order_ids)
            df.append(np.bincount(pairs % max(len(order_keys), 1), minlength=len(order_keys)))
        self._corpus = _CorpusStats(
            {w: i for i, w in enumerate(vocab)}, keys, df, float(np.log(len(corpus_references)))
        )
        self._bank = self._build_bank(corpus_references, n_refs, lengths, sentence_of_word, starts, ids)
        return self

    def _build_bank(self, corpus_references, n_refs, lengths, sentence_of_word, starts, ids) -> _ReferenceBank:
        n, corpus = self.config.n, self._corpus
        offsets = corpus.offsets
        n_grams = int(offsets[-1] + len(corpus.keys[-1]))
        sentence = np.concatenate([sentence_of_word[start] for start in starts])
        gram = np.concatenate([offset + order_ids for offset, order_ids in zip(offsets, ids, strict=True)])
        # (sentence, gram) entries with their term frequency
        entry_key, tf = _counts(sentence * n_grams + gram)
        sentence, gram = np.divmod(entry_key, n_grams)
        idf = corpus.log_n - np.log(np.maximum(np.concatenate(corpus.df), 1.0))
        weight = tf * idf[gram]
        order_of_gram = np.repeat(np.arange(n), [len(k) for k in corpus.keys])
        norm = np.sqrt(np.bincount(sentence * n + order_of_gram[gram], weights=weight**2,
                                   minlength=len(lengths) * n)).reshape(-1, n)
        image_of_sentence = np.repeat(np.arange(len(corpus_references)), n_refs)
        first_sentence = np.cumsum(n_refs) - n_refs
        local = np.arange(len(lengths)) - first_sentence[image_of_sentence]
        width = int(n_refs.max())
        key, row = _compact(image_of_sentence[sentence] * n_grams + gram)
        dense = np.zeros((len(key), width))
        dense[row, local[sentence]] = weight
        cells = (image_of_sentence, local)
        norms = np.zeros((len(corpus_references), width, n))
        norms[cells] = norm
        bigrams = np.zeros((len(corpus_references), width), dtype=np.int64)
        bigrams[cells] = np.maximum(lengths - 1, 0)
        return _ReferenceBank(
            image_of={tuple(refs): i for i, refs in enumerate(corpus_references)}, n_refs=n_refs, key=key,
            weight=dense, norm=norms, bigrams=bigrams, n_grams=n_grams,
        )

    def __call__(
        self, candidates: list[str], references: list[list[str]], extras: dict[str, Any] | None = None
    ) -> torch.Tensor:
        """Score each candidate against its references. `extras` is part of the reward contract and
        unused here."""
        check_batch("CiderD", candidates, references)
        candidates = list(candidates)
        if self._bank is None or not candidates:
            return torch.from_numpy(self._scores(candidates, references).astype(np.float32))
        image = np.array([self._bank.image_of.get(tuple(refs), -1) for refs in references], dtype=np.int64)
        scores = np.zeros(len(candidates))
        banked = np.flatnonzero(image >= 0)
        if len(banked):
            scores[banked] = self._banked_scores([candidates[i] for i in banked], image[banked])
        other = np.flatnonzero(image < 0)
        if len(other):  # references outside the fitted corpus: counted in full, with the fitted df
            scores[other] = self._scores([candidates[i] for i in other], [references[i] for i in other])
        return torch.from_numpy(scores.astype(np.float32))

    def _banked_scores(self, candidates: list[str], image: np.ndarray) -> np.ndarray:
        """Scores of candidates whose references are corpus images `image` (one per candidate)."""
        n, corpus, bank = self.config.n, self._corpus, self._bank
        batch = len(candidates)
        words, lengths, vocab = _tokenize(candidates)
        starts, ids, keys = _ngram_ids(words, lengths, n, len(vocab))
        fit_ids = corpus.fit_ids(vocab, keys)
        sizes = np.array([len(k) for k in keys])
        offsets = np.cumsum(sizes) - sizes
        n_batch_grams = int(sizes.sum())
        order_of_gram = np.repeat(np.arange(n), sizes)
        corpus_gram = np.concatenate([np.where(f >= 0, off + f, -1) for f, off in zip(fit_ids, corpus.offsets,
                                                                                       strict=True)])
        idf = corpus.log_n - np.log(np.maximum(corpus.document_frequency(fit_ids), 1.0))

        # The candidates' (sample, gram) entries, their tf-idf weights and norms.
        sentence_of_word = np.repeat(np.arange(batch), lengths)
        sample = np.concatenate([sentence_of_word[start] for start in starts])
        gram = np.concatenate([offset + order_ids for offset, order_ids in zip(offsets, ids, strict=True)])
        entry_key, tf = _counts(sample * n_batch_grams + gram)
        sample, gram = np.divmod(entry_key, n_batch_grams)
        weight = tf * idf[gram]
        order = order_of_gram[gram]
        norm = np.sqrt(np.bincount(sample * n + order, weights=weight**2, minlength=batch * n)).reshape(-1, n)

        # Each candidate entry meets the weights of its image's references for the same corpus gram.
        known = np.flatnonzero(corpus_gram[gram] >= 0)
        found = _lookup(bank.key, image[sample[known]] * bank.n_grams + corpus_gram[gram[known]])
        known, found = known[found >= 0], found[found >= 0]
        ref_weight = bank.weight[found]  # (matches, width)
        width = bank.weight.shape[1]
        cell = (sample[known] * width)[:, None] + np.arange(width)  # (sample, reference) of each weight
        clipped = np.minimum(weight[known, None], ref_weight) * ref_weight
        dot = np.bincount((cell * n + order[known, None]).ravel(), weights=clipped.ravel(),
                          minlength=batch * width * n).reshape(batch, width, n)

        denom = bank.norm[image] * norm[:, None]
        cosine = np.divide(dot, denom, out=np.zeros_like(denom), where=denom != 0)
        delta = (np.maximum(lengths - 1, 0)[:, None] - bank.bigrams[image]).astype(np.float64)
        per_ref = cosine.mean(axis=2) * np.exp(-(delta**2) / (2 * self.config.sigma**2))
        n_refs = bank.n_refs[image]
        per_ref[np.arange(width) >= n_refs[:, None]] = 0.0  # columns past a sample's references
        return per_ref.sum(axis=1) / n_refs * 10.0

    def _scores(self, candidates: list[str], references: list[list[str]]) -> np.ndarray:
        n, batch = self.config.n, len(candidates)
        if batch == 0:
            return np.zeros(0)
        n_refs = _check_references(references, "CiderD")
        # Sentences image by image: candidate (local index 0), then its references (1, 2, ...).
        per_image = n_refs + 1
        sentences = [s for c, refs in zip(candidates, references, strict=True) for s in (c, *refs)]
        words, lengths, vocab = _tokenize(sentences)
        starts, ids, keys = _ngram_ids(words, lengths, n, len(vocab))
        sizes = np.array([len(k) for k in keys])
        n_grams = int(sizes.sum())
        order_of_gram = np.repeat(np.arange(n), sizes)
        image_start = np.cumsum(per_image) - per_image
        image_of_sent = np.repeat(np.arange(batch), per_image)
        local_of_sent = np.arange(len(lengths)) - image_start[image_of_sent]
        # Bit fields of the sort key: image | gram | local sentence.
        local_bits = int(per_image.max() - 1).bit_length()
        gram_bits = max(n_grams - 1, 1).bit_length()
        if (batch - 1).bit_length() + gram_bits + local_bits > 63:
            raise ValueError(f"CiderD: batch of {batch} samples too large to index, split it")

        # One sort of (image, gram, local sentence) keys: all occurrences of a gram in one image's
        # sentences become adjacent, the candidate's first.
        sentence_of_word = np.repeat(np.arange(len(lengths)), lengths)
        sent = np.concatenate([sentence_of_word[start] for start in starts])
        offsets = np.cumsum(sizes) - sizes
        gram = np.concatenate([offset + order_ids for offset, order_ids in zip(offsets, ids, strict=True)])
        sentence_bits = (image_of_sent << (gram_bits + local_bits)) | local_of_sent
        key = np.sort(sentence_bits[sent] | (gram << local_bits))
        entry = np.flatnonzero(_run_starts(key))
        tf = np.diff(np.append(entry, len(key)))
        image_gram, local = key[entry] >> local_bits, key[entry] & ((1 << local_bits) - 1)
        image, gram = image_gram >> gram_bits, image_gram & ((1 << gram_bits) - 1)
        sent = image_start[image] + local
        group_first = _run_starts(image_gram)

        if self._corpus is not None:
            df = self._corpus.document_frequency(self._corpus.fit_ids(vocab, keys))
            log_n = self._corpus.log_n
        else:
            # A group (one gram in one image) has a reference entry iff its last entry is one.
            df = np.bincount(gram[_run_ends(image_gram) & (local > 0)], minlength=n_grams).astype(np.float64)
            log_n = float(np.log(batch))
        weight = tf * (log_n - np.log(np.maximum(df, 1.0)))[gram]
        row = sent * n + order_of_gram[gram]  # (sentence, order) cell of each entry
        rows = len(lengths) * n
        norm = np.sqrt(np.bincount(row, weights=weight**2, minlength=rows)).reshape(-1, n)
        # Clipped dot products: each reference entry meets its group's candidate weight (0 if none).
        # Candidate rows come out as their own squared norms and are simply not read.
        first_weight = np.where(local[group_first] == 0, weight[group_first], 0.0)
        cand_weight = first_weight[np.cumsum(group_first) - 1]
        clipped = np.minimum(cand_weight, weight) * weight
        dot = np.bincount(row, weights=clipped, minlength=rows).reshape(-1, n)

        ref_sent = np.flatnonzero(local_of_sent > 0)
        cand_sent = image_start[image_of_sent[ref_sent]]
        # Weights are >= 0, so a zero norm comes with a zero dot product: 0/0 -> 0 as in the reference.
        denom = norm[ref_sent] * norm[cand_sent]
        cosine = np.divide(dot[ref_sent], denom, out=np.zeros_like(denom), where=denom != 0)
        bigrams = np.maximum(lengths - 1, 0)
        delta = (bigrams[cand_sent] - bigrams[ref_sent]).astype(np.float64)
        per_ref = cosine.mean(axis=1) * np.exp(-(delta**2) / (2 * self.config.sigma**2))
        return np.bincount(image_of_sent[ref_sent], weights=per_ref, minlength=batch) / n_refs * 10.0
