"""Word KL: how close a candidate's word distribution is to its references' (pooled)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import torch

from rsforge.core.interfaces import Reward
from rsforge.rewards.common import as_scores, check_batch
from rsforge.rewards.configs import WordKLConfig


def _distribution(counts: Counter, vocabulary: list[str], smoothing: float) -> list[float]:
    """Word frequencies mixed with the uniform distribution over `vocabulary` (weight `smoothing`),
    so every word has non-zero probability; no words at all: uniform."""
    total = sum(counts.values())
    uniform = 1.0 / len(vocabulary)
    if total == 0:
        return [uniform] * len(vocabulary)
    return [(1 - smoothing) * counts[w] / total + smoothing * uniform for w in vocabulary]


class WordKL(Reward):
    """KL(P_ref || P_cand) over words: P_ref the pooled word frequencies of the references, P_cand the
    candidate's, both mixed with the uniform distribution over their joint vocabulary (weight
    `smoothing`) so a missing word costs a finite amount. Reported as exp(-KL) in (0, 1]
    (`form: exp`) or -KL (`form: neg`): identical distributions give KL 0 exactly, i.e. 1 or 0, and a
    candidate that misses reference words or repeats others scores lower. A per-sample word-level
    variant, not the seed's NKL (`nkl`, over token embeddings and rolling windows)."""

    def __init__(self, config: WordKLConfig) -> None:
        self.config = config

    def kl(self, candidate: str, references: list[str]) -> float:
        ref = Counter(w for r in references for w in r.split())
        cand = Counter(candidate.split())
        vocabulary = sorted(ref.keys() | cand.keys())
        if not vocabulary:
            return 0.0
        p = _distribution(ref, vocabulary, self.config.smoothing)
        q = _distribution(cand, vocabulary, self.config.smoothing)
        return max(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True)), 0.0)

    def __call__(self, candidates: list[str], references: list[list[str]], extras: dict[str, Any] | None = None
                 ) -> torch.Tensor:
        check_batch("word_kl", candidates, references)
        kls = [self.kl(c, refs) for c, refs in zip(candidates, references, strict=True)]
        return as_scores([math.exp(-k) if self.config.form == "exp" else -k for k in kls])
