"""Metrics of parsed short answers: yes/no, counts, 3x3-grid locations, exact-match accuracy.

Pure Python/numpy. Each function takes the parsed predictions (None where an answer was malformed)
and the parsed references, and returns flat `{name: value}` dicts that include `n` (samples scored)
and `malformed` (predictions that could not be parsed). A malformed prediction always scores as
wrong; how it enters each rate is stated per function. A ratio whose denominator is 0 is 0.0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

Grid = Mapping[str, frozenset[str]]


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def _check_lengths(predictions: Sequence, references: Sequence) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    return {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn)}


# ------------------------------------------------------------------------------------------ yes/no
def binary_metrics(predictions: Sequence[bool | None], references: Sequence[bool]) -> dict[str, float]:
    """Accuracy, and precision/recall/F1 of "yes" (change) as the positive class. A malformed answer
    counts as the wrong one: a false negative where the reference is yes, a false positive where no."""
    _check_lengths(predictions, references)
    tp = fp = fn = tn = malformed = 0
    for pred, ref in zip(predictions, references, strict=True):
        if pred is None:
            malformed += 1
            pred = not ref
        tp += pred and ref
        fp += pred and not ref
        fn += (not pred) and ref
        tn += (not pred) and not ref
    n = len(references)
    return {"accuracy": _ratio(tp + tn, n), **_prf(tp, fp, fn), "n": n, "malformed": malformed}


# ---------------------------------------------------------------------------------------- counting
@dataclass(frozen=True)
class Counts:
    """A parsed count answer: the total, and the counts of the classes it names (empty for "3")."""

    total: int
    per_class: dict[str, int] = field(default_factory=dict)


def counts_match(pred: Counts | None, ref: Counts) -> bool:
    """Right total, and the right count for every class the reference names."""
    return pred is not None and pred.total == ref.total and all(
        pred.per_class.get(c, 0) == v for c, v in ref.per_class.items()
    )


def _errors(values: list[float]) -> dict[str, float]:
    e = np.asarray(values, dtype=np.float64)
    return {"mae": float(np.abs(e).mean()), "rmse": float(np.sqrt((e**2).mean()))} if e.size else {}


def count_metrics(predictions: Sequence[Counts | None], references: Sequence[Counts]) -> dict[str, float]:
    """`accuracy` (`counts_match`), `mae` / `rmse` of the totals, and `mae/<class>` / `rmse/<class>` for
    each class named by some reference (DeltaVLM's roads and buildings MAE / RMSE), over the samples
    whose reference names classes or says nothing changed (a total of 0 is 0 of every class); a class
    an answer leaves out counts as 0. A malformed answer counts as 0 everywhere (and is never accurate)."""
    _check_lengths(predictions, references)
    zero = Counts(0)
    total_errors: list[float] = []
    class_errors: dict[str, list[float]] = {}
    classes = sorted({c for r in references for c in r.per_class})
    correct = malformed = 0
    for pred, ref in zip(predictions, references, strict=True):
        correct += counts_match(pred, ref)
        if pred is None:
            malformed += 1
            pred = zero
        total_errors.append(pred.total - ref.total)
        if ref.per_class or ref.total == 0:
            for c in classes:
                class_errors.setdefault(c, []).append(pred.per_class.get(c, 0) - ref.per_class.get(c, 0))
    n = len(references)
    out: dict[str, float] = {"accuracy": _ratio(correct, n), **_errors(total_errors)}
    for c in classes:
        out |= {f"{k}/{c}": v for k, v in _errors(class_errors[c]).items()}
    return out | {"n": n, "malformed": malformed}


# ------------------------------------------------------------------------------------------- grid
def _pairs(grid: Grid) -> set[tuple[str, str]]:
    return {(category, cell) for category, cells in grid.items() for cell in cells}


def _grid_scores(predictions: Sequence[Grid | None], references: Sequence[Grid]) -> dict[str, float]:
    tp = fp = fn = exact = 0
    jaccards: list[float] = []
    for pred, ref in zip(predictions, references, strict=True):
        r = _pairs(ref)
        if pred is None:
            fn += len(r)
            jaccards.append(0.0)
            continue
        p = _pairs(pred)
        tp, fp, fn = tp + len(p & r), fp + len(p - r), fn + len(r - p)
        jaccards.append(_ratio(len(p & r), len(p | r)) if p | r else 1.0)
        exact += p == r
    return {**_prf(tp, fp, fn), "jaccard": float(np.mean(jaccards)) if jaccards else 0.0,
            "exact_match": _ratio(exact, len(references))}  # fmt: skip


def _only(grid: Grid | None, category: str) -> Grid | None:
    return None if grid is None else {category: grid.get(category, frozenset())}


def grid_metrics(predictions: Sequence[Grid | None], references: Sequence[Grid]) -> dict[str, float]:
    """3x3-grid localisation over (category, cell) pairs: micro precision/recall/F1 over the split,
    mean per-sample Jaccard (1.0 when both sides are empty, i.e. "no change" answered right) and
    exact match; and the same per category named by some reference (`f1/roads`, ...), as DeltaVLM
    reports roads and buildings apart (scripts/test-loc.ipynb; its sklearn Jaccard counts an empty
    answer to an empty reference as 0, not 1). A malformed answer predicts no pair, has Jaccard 0 and
    no exact match."""
    _check_lengths(predictions, references)
    out = _grid_scores(predictions, references)
    for category in sorted({c for r in references for c in r}):
        scores = _grid_scores([_only(p, category) for p in predictions], [_only(r, category) for r in references])
        out |= {f"{k}/{category}": v for k, v in scores.items()}
    return out | {"n": len(references), "malformed": sum(p is None for p in predictions)}


# -------------------------------------------------------------------------------------- accuracy
def accuracy_by_group(
    correct: Sequence[bool], groups: Sequence[str | None] | None = None, *, malformed: int = 0
) -> dict[str, float]:
    """Overall accuracy and `accuracy/<group>` for every group named (samples with group None count in
    the overall accuracy only); `malformed` is passed through to the result."""
    out: dict[str, float] = {"accuracy": _ratio(sum(map(bool, correct)), len(correct))}
    if groups is not None:
        if len(groups) != len(correct):
            raise ValueError(f"{len(correct)} results but {len(groups)} groups")
        for name in sorted({g for g in groups if g is not None}):
            hits = [bool(c) for c, g in zip(correct, groups, strict=True) if g == name]
            out[f"accuracy/{name}"] = _ratio(sum(hits), len(hits))
    return out | {"n": len(correct), "malformed": malformed}
