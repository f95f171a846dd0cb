"""The recipe's rewards as one object: build, fit, score, normalise, weight and combine.

A recipe's `rewards:` list holds two kinds of parts, told apart by the built part:

- text rewards, `(candidates, references, extras) -> (B,)` raw scores. Each is standardised with
  its running mean and std (`normalise`, Welford over everything seen or an EMA with
  `norm_momentum`), multiplied by its `weight`, and the sum is the combined reward (B,);
- logit regularisers (`LogitRegulariser`s), `(logits (N, L, V), mask (N, L)) -> (N,)`: their
  `weight * mean(value)` is added to the policy loss by `regularise`.

Rewards that learn corpus statistics (`needs_corpus = True`, e.g. CIDEr-D's document frequencies)
are fitted on the training references given at construction. The running statistics travel with
checkpoints through `state_dict` / `load_state_dict`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from rsforge.core.configs import RewardConfig
from rsforge.core.errors import RecipeError
from rsforge.core.interfaces import LogitRegulariser, Reward
from rsforge.core.registry import Registry


class RunningStats:
    """Running mean and variance of one reward: Welford's exact update over every value seen, or an
    exponential moving average weighting each new batch by `momentum`."""

    def __init__(self, momentum: float | None = None) -> None:
        self.momentum = momentum
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0  # Welford: sum of squared deviations; EMA: the variance itself

    @property
    def var(self) -> float:
        if self.momentum is not None:
            return self.m2
        return self.m2 / self.count if self.count else 0.0

    def update(self, values: torch.Tensor) -> None:
        values = values.detach().double().flatten()
        n = values.numel()
        if n == 0:
            return
        batch_mean = float(values.mean())
        batch_var = float(values.var(unbiased=False))
        if self.momentum is not None and self.count:
            m = self.momentum
            delta = batch_mean - self.mean
            self.mean += m * delta
            self.m2 = (1 - m) * (self.m2 + m * delta**2) + m * batch_var
        elif self.momentum is not None:  # the first batch sets the EMA
            self.mean, self.m2 = batch_mean, batch_var
        else:  # Chan et al.'s merge of two Welford accumulators
            total = self.count + n
            delta = batch_mean - self.mean
            self.mean += delta * n / total
            self.m2 += batch_var * n + delta**2 * self.count * n / total
        self.count += n

    def normalise(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.mean) / math.sqrt(self.var + 1e-8)

    def state_dict(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), float(state["mean"]), float(state["m2"])


@dataclass
class RewardScores:
    """`total` (B,): the combined reward; `raw` and `normalised`: each text reward's (B,) scores."""

    total: torch.Tensor
    raw: dict[str, torch.Tensor]
    normalised: dict[str, torch.Tensor]


@dataclass
class _Entry:
    key: str
    config: RewardConfig
    fn: Callable
    stats: RunningStats | None


class RewardSet:
    def __init__(self, configs: list[RewardConfig], registry: Registry,
                 corpus: list[list[str]] | None = None) -> None:
        """`configs`: the recipe's `rewards`; `corpus`: the training references (one list per image)
        for rewards that fit corpus statistics. Identical lists count once: a training split that
        repeats an image once per reference caption lists its references that many times, and CIDEr-D's
        document frequencies count images. Without a corpus those rewards use each call's references
        (CIDEr-D's document frequencies from the batch)."""
        if corpus is not None:
            corpus = [list(refs) for refs in dict.fromkeys(tuple(refs) for refs in corpus)]
        names = Counter(c.name for c in configs)
        seen: Counter = Counter()
        self.rewards: list[_Entry] = []
        self.regularisers: list[_Entry] = []
        for i, config in enumerate(configs):
            spec = registry.get("reward", config.name, path=f"rewards[{i}].name")
            fn = spec.load_factory()(config)
            # Two entries with one name (e.g. two length targets) are told apart by their position.
            seen[config.name] += 1
            key = config.name if names[config.name] == 1 else f"{config.name}_{seen[config.name]}"
            if isinstance(fn, LogitRegulariser):
                self.regularisers.append(_Entry(key, config, fn, None))
                continue
            if not isinstance(fn, Reward):
                raise TypeError(f"rewards[{i}] ({config.name}): {spec.factory} builds a {type(fn).__name__}, which "
                                "is neither a Reward nor a LogitRegulariser (rsforge.core.interfaces)")
            if corpus is not None and fn.needs_corpus:
                if not corpus:
                    raise RecipeError(f"rewards[{i}] ({config.name}): the training corpus has no references")
                fn.fit(corpus)
            stats = RunningStats(config.norm_momentum) if config.normalise else None
            self.rewards.append(_Entry(key, config, fn, stats))

    @classmethod
    def from_recipe(cls, recipe, plugins, corpus: list[list[str]] | None = None) -> RewardSet:
        if not recipe.rewards:
            raise RecipeError("rewards: the recipe lists no reward (SCST needs at least one text reward)")
        return cls(recipe.rewards, plugins.registry, corpus)

    @property
    def names(self) -> list[str]:
        return [e.key for e in self.rewards]

    @property
    def extras_needed(self) -> set[str]:
        """The `extras` keys the text rewards read (e.g. mask_iou's predicted masks)."""
        return {k for e in self.rewards for k in e.fn.reads_extras}

    def score(self, candidates: list[str], references: list[list[str]], extras: dict[str, Any] | None = None,
              *, update: bool = True) -> RewardScores:
        """Raw, normalised and combined rewards of a batch. `update`: fold these raw scores into the
        running statistics first (training); False leaves them as they are (evaluation)."""
        if not self.rewards:
            raise RecipeError("rewards: no text reward to score with (only logit regularisers are listed)")
        raw, normalised = {}, {}
        total = torch.zeros(len(candidates))
        for entry in self.rewards:
            values = entry.fn(candidates, references, extras).detach().float().cpu()
            if values.shape != (len(candidates),):
                raise ValueError(f"reward '{entry.key}' returned shape {tuple(values.shape)}, expected "
                                 f"({len(candidates)},)")
            raw[entry.key] = values
            if entry.stats is not None:
                if update:
                    entry.stats.update(values)
                values = entry.stats.normalise(values).float()
            normalised[entry.key] = values
            total = total + entry.config.weight * values
        return RewardScores(total=total, raw=raw, normalised=normalised)

    def regularise(self, logits: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The regularisers' weighted loss term (a scalar with gradient; 0 when none is listed) and
        each one's mean value."""
        loss = logits.new_zeros((), dtype=torch.float32)
        values: dict[str, float] = {}
        for entry in self.regularisers:
            value = entry.fn(logits, mask).mean()
            loss = loss + entry.config.weight * value
            values[entry.key] = float(value.detach())
        return loss, values

    def state_dict(self) -> dict[str, dict[str, float]]:
        return {e.key: e.stats.state_dict() for e in self.rewards if e.stats is not None}

    def load_state_dict(self, state: dict[str, dict[str, float]]) -> None:
        expected = set(self.state_dict())
        if set(state) != expected:
            raise ValueError(f"reward statistics for {sorted(state)} do not match the recipe's normalised rewards "
                             f"{sorted(expected)}")
        for entry in self.rewards:
            if entry.stats is not None:
                entry.stats.load_state_dict(state[entry.key])

    def close(self) -> None:
        """Release what rewards hold (METEOR's Java process)."""
        for entry in self.rewards:
            entry.fn.close()
