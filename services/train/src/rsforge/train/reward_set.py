"""The recipe's rewards as one object: build, fit, score, normalise, weight and combine.

A recipe's `rewards:` list holds two kinds of parts, told apart by the built part:

- text rewards, `(candidates, references, extras) -> (B,)` raw scores. Before any of them reads a
  caption, candidates and references are PTB-tokenized as caption evaluation tokenizes them
  (`rsforge.tasks.metrics.ptb`: lower case, punctuation removed), so the training signal and the
  reported CIDEr see the same words. Each raw score is then scaled as its `normalise` says: `zscore`
  (running mean and std: Welford over everything seen, or an EMA with `norm_momentum`), `minmax`
  (running min and max, as the InstructBLIP-SCST seed does) or `none`; multiplied by its `weight` (unset:
  1/N under `minmax`, the seed's uniform weights over the N text rewards, else 1); the sum is the
  combined reward (B,);
- logit regularisers (`LogitRegulariser`s), `(logits (N, L, V), mask (N, L)) -> (N,)`: their
  `weight * mean(value)` is added to the policy loss by `regularise`.

The running statistics are folded from every worker's scores at every training step (gathered over
`torch.distributed` when it is initialised), so all ranks hold the same statistics, and rank 0's, saved
in a checkpoint through `state_dict`, are every rank's. A reward that keeps state of its own across calls
(NKL's rolling token windows) offers `score_shared(candidates, references, share)` and `state_dict` /
`load_state_dict`: training steps hand it `share`, which gathers its new state from every worker, so
that state too is the same on all ranks, and it is saved and restored with the statistics. Rewards that
learn corpus statistics (`needs_corpus = True`, e.g. CIDEr-D's document frequencies) are fitted on the
(tokenized) training references given at construction.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from rsforge.core.configs import RewardConfig
from rsforge.core.errors import RecipeError
from rsforge.core.interfaces import LogitRegulariser, Reward
from rsforge.core.registry import Registry
from rsforge.tasks.metrics.ptb import ptb_tokenize


def gather_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """Every rank's `values` (..., n_rank) concatenated along the last dimension in rank order, on the
    CPU; `values` alone outside `torch.distributed`. Ranks may hold different numbers of values."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values.detach().cpu()
    world = dist.get_world_size()
    # NCCL moves CUDA tensors only; float64 carries float32 scores exactly.
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    local = values.detach().to(device=device, dtype=torch.float64)
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([local.shape[-1]], device=device))
    counts = [int(s) for s in sizes]
    padded = F.pad(local, (0, max(counts) - local.shape[-1]))
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[..., :n] for g, n in zip(gathered, counts, strict=True)], dim=-1).cpu().to(values.dtype)


def _share_rows(rows: torch.Tensor) -> torch.Tensor:
    """Every rank's rows (n_rank, D) stacked in rank order (a reward's new state, e.g. token embeddings)."""
    return gather_across_ranks(rows.T).T.contiguous()


class RunningStats:
    """`zscore`: running mean and variance of one reward: Welford's exact update over every value seen,
    or an exponential moving average weighting each new batch by `momentum`."""

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


class RunningMinMax:
    """`minmax`, the InstructBLIP-SCST seed's normalisation (`BaseTask.normalize_score`): the smallest and
    largest value seen so far, this batch included, and (x - min) / (max - min), or 0 while they are equal."""

    def __init__(self) -> None:
        self.low: float | None = None
        self.high: float | None = None

    def update(self, values: torch.Tensor) -> None:
        if values.numel() == 0:
            return
        low, high = float(values.min()), float(values.max())
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)

    def normalise(self, values: torch.Tensor) -> torch.Tensor:
        if self.low is None or self.high <= self.low:
            return torch.zeros_like(values)
        return (values - self.low) / (self.high - self.low)

    def state_dict(self) -> dict[str, float | None]:
        return {"low": self.low, "high": self.high}

    def load_state_dict(self, state: dict[str, float | None]) -> None:
        self.low, self.high = state["low"], state["high"]


NORMALISERS: dict[str, Callable[[RewardConfig], RunningStats | RunningMinMax]] = {
    "zscore": lambda config: RunningStats(config.norm_momentum),
    "minmax": lambda config: RunningMinMax(),
}


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
    weight: float
    stats: RunningStats | RunningMinMax | None


class RewardSet:
    def __init__(self, configs: list[RewardConfig], registry: Registry,
                 corpus: list[list[str]] | None = None) -> None:
        """`configs`: the recipe's `rewards`; `corpus`: the training references (one list per image)
        for rewards that fit corpus statistics. Identical lists count once: a training split that
        repeats an image once per reference caption lists its references that many times, and CIDEr-D's
        document frequencies count images. Without a corpus those rewards use each call's references
        (CIDEr-D's document frequencies from the batch)."""
        if corpus is not None:
            corpus = [[ptb_tokenize(r) for r in refs] for refs in dict.fromkeys(tuple(refs) for refs in corpus)]
        names = Counter(c.name for c in configs)
        seen: Counter = Counter()
        built = []
        for i, config in enumerate(configs):
            spec = registry.get("reward", config.name, path=f"rewards[{i}].name")
            fn = spec.load_factory()(config)
            # Two entries with one name (e.g. two length targets) are told apart by their position.
            seen[config.name] += 1
            key = config.name if names[config.name] == 1 else f"{config.name}_{seen[config.name]}"
            if not isinstance(fn, Reward | LogitRegulariser):
                raise TypeError(f"rewards[{i}] ({config.name}): {spec.factory} builds a {type(fn).__name__}, which "
                                "is neither a Reward nor a LogitRegulariser (rsforge.core.interfaces)")
            built.append((i, key, config, fn))
        text_rewards = sum(isinstance(fn, Reward) for *_, fn in built)
        self.rewards: list[_Entry] = []
        self.regularisers: list[_Entry] = []
        for i, key, config, fn in built:
            if isinstance(fn, LogitRegulariser):
                self.regularisers.append(_Entry(key, config, fn, 1.0 if config.weight is None else config.weight, None))
                continue
            if corpus is not None and fn.needs_corpus:
                if not corpus:
                    raise RecipeError(f"rewards[{i}] ({config.name}): the training corpus has no references")
                fn.fit(corpus)
            weight = config.weight
            if weight is None:
                weight = 1.0 / text_rewards if config.normalise == "minmax" else 1.0
            stats = NORMALISERS[config.normalise](config) if config.normalise in NORMALISERS else None
            self.rewards.append(_Entry(key, config, fn, weight, stats))
        # The teacher-forced SCST step's running mean of (sample - greedy) rewards (`rsforge.train.scst`):
        # state that a resumed run must continue, so it travels with these statistics.
        self.running_mean_reward = 0.0

    @classmethod
    def from_recipe(cls, recipe, plugins, corpus: list[list[str]] | None = None) -> RewardSet:
        if not recipe.rewards:
            raise RecipeError("rewards: the recipe lists no reward (SCST needs at least one text reward)")
        return cls(recipe.rewards, plugins.registry, corpus)

    @property
    def names(self) -> list[str]:
        return [e.key for e in self.rewards]

    @property
    def weights(self) -> dict[str, float]:
        """Each text reward's factor in the combined reward, as resolved from the recipe."""
        return {e.key: e.weight for e in self.rewards}

    @property
    def extras_needed(self) -> set[str]:
        """The `extras` keys the text rewards read (e.g. mask_iou's predicted masks)."""
        return {k for e in self.rewards for k in e.fn.reads_extras}

    def score(self, candidates: list[str], references: list[list[str]], extras: dict[str, Any] | None = None,
              *, update: bool = True) -> RewardScores:
        """Raw, normalised and combined rewards of a batch. `update`: fold these raw scores, with every
        other rank's (a collective call: all ranks must make it), into the running statistics first
        (training); False leaves them as they are (evaluation)."""
        if not self.rewards:
            raise RecipeError("rewards: no text reward to score with (only logit regularisers are listed)")
        candidates = [ptb_tokenize(c) for c in candidates]
        references = [[ptb_tokenize(r) for r in refs] for refs in references]
        raw = {}
        for entry in self.rewards:
            if hasattr(entry.fn, "score_shared"):
                values = entry.fn.score_shared(candidates, references, _share_rows if update else None)
            else:
                values = entry.fn(candidates, references, extras)
            values = values.detach().float().cpu()
            if values.shape != (len(candidates),):
                raise ValueError(f"reward '{entry.key}' returned shape {tuple(values.shape)}, expected "
                                 f"({len(candidates)},)")
            raw[entry.key] = values
        tracked = [e for e in self.rewards if e.stats is not None]
        if update and tracked:
            everyone = gather_across_ranks(torch.stack([raw[e.key] for e in tracked]))
            for entry, values in zip(tracked, everyone, strict=True):
                entry.stats.update(values)
        normalised = {}
        total = torch.zeros(len(candidates))
        for entry in self.rewards:
            values = raw[entry.key]
            if entry.stats is not None:
                values = entry.stats.normalise(values).float()
            normalised[entry.key] = values
            total = total + entry.weight * values
        return RewardScores(total=total, raw=raw, normalised=normalised)

    def regularise(self, logits: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The regularisers' weighted loss term (a scalar with gradient; 0 when none is listed) and
        each one's mean value."""
        loss = logits.new_zeros((), dtype=torch.float32)
        values: dict[str, float] = {}
        for entry in self.regularisers:
            value = entry.fn(logits, mask).mean()
            loss = loss + entry.weight * value
            values[entry.key] = float(value.detach())
        return loss, values

    def state_dict(self) -> dict[str, Any]:
        """The running statistics of the normalised rewards, the state of the rewards that keep one
        (`rewards`, by key) and the running mean reward."""
        stats = {e.key: {"normalise": e.config.normalise, **e.stats.state_dict()}
                 for e in self.rewards if e.stats is not None}
        kept = {e.key: e.fn.state_dict() for e in self.rewards if hasattr(e.fn, "state_dict")}
        return {"normalisers": stats, "rewards": kept, "running_mean_reward": self.running_mean_reward}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = {key: value["normalise"] for key, value in self.state_dict()["normalisers"].items()}
        given = {key: value.get("normalise") for key, value in state["normalisers"].items()}
        if given != expected:
            raise ValueError(f"reward statistics for {given} do not match the recipe's normalised rewards {expected}")
        kept = {e.key: e.fn for e in self.rewards if hasattr(e.fn, "state_dict")}
        if set(state.get("rewards", {})) != set(kept):
            raise ValueError(f"reward states for {sorted(state.get('rewards', {}))} do not match the recipe's "
                             f"rewards that keep one {sorted(kept)}")
        for entry in self.rewards:
            if entry.stats is not None:
                entry.stats.load_state_dict(state["normalisers"][entry.key])
        for key, fn in kept.items():
            fn.load_state_dict(state["rewards"][key])
        self.running_mean_reward = float(state["running_mean_reward"])

    def close(self) -> None:
        """Release what rewards hold (METEOR's Java process)."""
        for entry in self.rewards:
            entry.fn.close()
