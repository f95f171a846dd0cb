"""What every text reward checks first, and the word-level helpers several rewards share."""

from __future__ import annotations

import torch


def check_batch(name: str, candidates: list[str], references: list[list[str]]) -> None:
    """The reward contract's shape rules, with errors that name the reward."""
    if isinstance(candidates, str):
        raise TypeError(f"{name}: candidates must be a list of strings, got one string")
    if len(candidates) != len(references):
        raise ValueError(f"{name}: {len(candidates)} candidates but {len(references)} lists of references")
    for i, refs in enumerate(references):
        if isinstance(refs, str):
            raise TypeError(f"{name}: references[{i}] must be a list of strings, got one string")
        if not refs:
            raise ValueError(f"{name}: sample {i} has no reference")


def as_scores(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)
