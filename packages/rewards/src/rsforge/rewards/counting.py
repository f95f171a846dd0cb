"""Counting rewards: how well the numbers a caption gives match the ground truth's.

Counts are read by `ObjectVocabulary.counts`: digits and number words ("3 houses", "seven storage
tanks", "twenty one cars", "a pair of courts") before the object, up to three modifiers apart. Uncertain
quantities ("a few", "several", "some", "many", "lots of") are not counts: they say "more than one"
without a number, so they are neither one (as an article would wrongly make "a few buildings") nor
compared. The ground-truth count of a class is the median of the exact counts its references give.

The seed names two counting signals, the mean absolute and the mean signed count error, without their
code in its public repository; `count_abs_error` and `count_signed_error` implement those definitions
over the classes both sides count, and `count_accuracy` is this package's earlier normalised score.
"""

from __future__ import annotations

from typing import Any

from rsforge.rewards.configs import CountingConfig
from rsforge.rewards.objects import ObjectReward
from rsforge.rewards.vocabulary import reference_counts


class CountErrorReward(ObjectReward):
    """The count errors of a caption: caption count minus ground-truth count, one per class that both
    the caption and the references count exactly (positive: the caption over-counts)."""

    config: CountingConfig

    def count_errors(self, candidate: str, references: list[str]) -> dict[str, float]:
        truth = reference_counts(self.vocabulary, references)
        said = self.vocabulary.counts(candidate)
        return {cls: said[cls] - truth[cls] for cls in truth if said.get(cls) is not None}

    def errors(self, candidate: str, references: list[str]) -> tuple[float, float]:
        """(mean absolute error, mean signed error) over the classes both sides count; (0, 0) when
        there is none, so a caption that gives no number is neither rewarded nor punished here (SDE
        rewards naming the objects)."""
        diffs = list(self.count_errors(candidate, references).values())
        if not diffs:
            return 0.0, 0.0
        return sum(abs(d) for d in diffs) / len(diffs), sum(diffs) / len(diffs)


class CountAbsError(CountErrorReward):
    """The seed's mean absolute count error, as a reward to maximise: -mean |c - g| over the classes
    that both the caption (c) and the references (g, median) count, in (-inf, 0]; 0 when no class is
    counted by both. The sign follows the seed's convention that every learning signal is maximised
    (its penalties, such as `length_penalization` or the readability gap, are returned negated).
    "four planes and three buildings" against "five planes and one building": errors -1 and +2,
    mean absolute error 1.5, reward -1.5."""

    name = "count_abs_error"

    def score(self, candidate: str, references: list[str], extra: Any) -> float:
        return -self.errors(candidate, references)[0]


class CountSignedError(CountErrorReward):
    """The seed's mean signed count error, mean (c - g) over the classes that both the caption (c) and
    the references (g, median) count (positive: the caption over-counts). As a reward to maximise it is
    -|mean (c - g)|, in (-inf, 0]: errors of opposite sign cancel before the magnitude is taken, so this
    signal punishes a caption's net over- or under-counting, where `count_abs_error` punishes every
    miscount. Maximising the signed mean itself would reward over-counting (and its negation
    under-counting). "four planes and three buildings" against "five planes and one building": errors
    -1 and +2, mean signed error +0.5, reward -0.5; `errors()` gives the signed value."""

    name = "count_signed_error"

    def score(self, candidate: str, references: list[str], extra: Any) -> float:
        return -abs(self.errors(candidate, references)[1])


class CountAccuracy(CountErrorReward):
    """1 - the mean normalised count error over the classes the references count exactly: per class
    |c - g| / max(c, g), with g the median of the references' counts and c the candidate's (error 1
    where the candidate gives no exact number for the class), in [0, 1]. 1 when the references count
    nothing, so uncounted captions leave the combined reward alone. "six storage tanks" against "seven
    storage tanks": 1 - 1/7."""

    name = "count_accuracy"

    def score(self, candidate: str, references: list[str], extra: Any) -> float:
        truth = reference_counts(self.vocabulary, references)
        if not truth:
            return 1.0
        said = self.vocabulary.counts(candidate)
        errors = []
        for cls, target in truth.items():
            have = said.get(cls)
            errors.append(1.0 if have is None else abs(have - target) / max(have, target, 1e-9))
        return 1.0 - sum(errors) / len(errors)
