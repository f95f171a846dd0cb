"""BLEU-n and ROUGE-L per sample, exactly as pycocoevalcap computes them (its own scorers are called,
so evaluation and reward never disagree). Text is split on whitespace: tokenize upstream."""

from __future__ import annotations

from typing import Any

import torch
from pycocoevalcap.bleu.bleu_scorer import BleuScorer
from pycocoevalcap.rouge.rouge import Rouge

from rsforge.core.interfaces import Reward
from rsforge.rewards.common import as_scores, check_batch
from rsforge.rewards.configs import BleuConfig, RougeLConfig


class Bleu(Reward):
    """Sentence BLEU-n of each candidate against its references (pycocoevalcap's 'closest'
    brevity penalty and smoothing), in [0, 1]."""

    def __init__(self, config: BleuConfig) -> None:
        self.config = config

    def __call__(self, candidates: list[str], references: list[list[str]], extras: dict[str, Any] | None = None
                 ) -> torch.Tensor:
        check_batch("bleu", candidates, references)
        if not candidates:
            return as_scores([])
        scorer = BleuScorer(n=self.config.n)
        for candidate, refs in zip(candidates, references, strict=True):
            scorer += (candidate, list(refs))
        _, per_order = scorer.compute_score(option="closest", verbose=0)
        return as_scores(per_order[self.config.n - 1])


class RougeL(Reward):
    """ROUGE-L F-measure (longest common subsequence, best reference precision and recall), in [0, 1]."""

    def __init__(self, config: RougeLConfig) -> None:
        self.config = config
        self._rouge = Rouge()
        self._rouge.beta = config.beta

    def __call__(self, candidates: list[str], references: list[list[str]], extras: dict[str, Any] | None = None
                 ) -> torch.Tensor:
        check_batch("rouge_l", candidates, references)
        return as_scores([self._rouge.calc_score([c], list(refs)) for c, refs in zip(candidates, references,
                                                                                     strict=True)])
