"""RewardSet: building from a recipe's reward list, running normalisation, weights, regularisers,
and the running statistics' round trip through a state dict. Uses in-process reward plugins, so the
kernel test needs no plugin package."""

from __future__ import annotations

import pytest
import torch

from rsforge.core.configs import RewardConfig
from rsforge.core.errors import RecipeError
from rsforge.core.hookspecs import hookimpl
from rsforge.core.interfaces import LogitRegulariser, Reward
from rsforge.core.plugins import PluginManager
from rsforge.train.reward_set import RewardSet, RunningStats


class WordCount(Reward):
    """Raw reward: the number of words, times `scale`."""

    def __init__(self, config):
        self.config = config

    def __call__(self, candidates, references, extras=None):
        return torch.tensor([len(c.split()) * self.config.scale for c in candidates], dtype=torch.float32)


class ScaledConfig(RewardConfig):
    scale: float = 1.0


class Fitted(Reward):
    """Raw reward: 1 if the candidate is one of the corpus references it was fitted on."""

    needs_corpus = True

    def __init__(self, config):
        self.known: set[str] | None = None
        self.corpus: list[list[str]] | None = None

    def fit(self, corpus):
        self.corpus = corpus
        self.known = {r for refs in corpus for r in refs}

    def __call__(self, candidates, references, extras=None):
        return torch.tensor([float(c in self.known) for c in candidates])


class MeanLogit(LogitRegulariser):

    def __init__(self, config):
        pass

    def __call__(self, logits, mask):
        return (logits.mean(-1) * mask).sum(1)


class Plugin:
    @hookimpl
    def register_rewards(self, register):
        register("words", factory=f"{__name__}:WordCount", config=ScaledConfig)
        register("fitted", factory=f"{__name__}:Fitted", config=RewardConfig)
        register("mean_logit", factory=f"{__name__}:MeanLogit", config=RewardConfig)


@pytest.fixture()
def registry():
    plugins = PluginManager(entry_points_source=[])
    plugins.register(Plugin(), name="test-rewards", distribution="tests")
    return plugins.registry


def test_welford_and_ema_statistics():
    values = torch.tensor([1.0, 2.0, 4.0, 8.0, 3.0])
    welford = RunningStats()
    welford.update(values[:2])
    welford.update(values[2:])
    assert welford.count == 5
    assert welford.mean == pytest.approx(float(values.mean()))
    assert welford.var == pytest.approx(float(values.var(unbiased=False)))
    ema = RunningStats(momentum=0.5)
    ema.update(torch.tensor([0.0, 2.0]))  # first batch: mean 1, var 1
    ema.update(torch.tensor([5.0, 5.0]))  # mixture of N(1, 1) and N(5, 0), half each
    assert ema.mean == pytest.approx(3.0)
    assert ema.var == pytest.approx(0.5 * 1 + 0.5 * 0 + 0.25 * 16)
    normalised = welford.normalise(values)
    assert float(normalised.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(normalised.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)


def test_normalised_weighted_sum_and_raw_scores(registry):
    configs = [ScaledConfig(name="words", weight=2.0), ScaledConfig(name="words", scale=10.0, weight=1.0),
               ScaledConfig(name="words", weight=0.5, normalise=False)]
    rewards = RewardSet(configs, registry)
    assert rewards.names == ["words_1", "words_2", "words_3"]
    candidates, references = ["a", "a b", "a b c"], [["x"]] * 3
    scores = rewards.score(candidates, references)
    assert scores.raw["words_1"].tolist() == [1, 2, 3] and scores.raw["words_2"].tolist() == [10, 20, 30]
    z = torch.tensor([-1.0, 0.0, 1.0]) * 1.5**0.5  # standardised 1, 2, 3 (population std)
    # Both normalised rewards become the same z whatever their scale; the third stays raw.
    torch.testing.assert_close(scores.normalised["words_1"], z, rtol=0, atol=1e-4)
    torch.testing.assert_close(scores.normalised["words_2"], z, rtol=0, atol=1e-4)
    torch.testing.assert_close(scores.total, 2 * z + z + 0.5 * torch.tensor([1.0, 2.0, 3.0]), rtol=0, atol=1e-4)
    # update=False scores with the statistics as they are.
    before = rewards.state_dict()
    rewards.score(["a b c d e"], [["x"]], update=False)
    assert rewards.state_dict() == before


def test_state_round_trip(registry):
    configs = [ScaledConfig(name="words"), ScaledConfig(name="words", norm_momentum=0.1)]
    rewards = RewardSet(configs, registry)
    rewards.score(["a", "a b c", "a b c d"], [["x"]] * 3)
    state = rewards.state_dict()
    restored = RewardSet(configs, registry)
    restored.load_state_dict(state)
    batch = ["a b", "a b c d e f"]
    torch.testing.assert_close(restored.score(batch, [["x"]] * 2).total, rewards.score(batch, [["x"]] * 2).total)
    assert restored.state_dict() == rewards.state_dict()
    with pytest.raises(ValueError, match="do not match"):
        RewardSet([ScaledConfig(name="words")], registry).load_state_dict(state)


def test_corpus_fit_and_regularisers(registry):
    configs = [RewardConfig(name="fitted", normalise=False), RewardConfig(name="mean_logit", weight=0.5)]
    # A split with one sample per caption repeats each image's references: they are fitted once.
    rewards = RewardSet(configs, registry, corpus=[["a road"], ["a house", "two trees"], ["a house", "two trees"]])
    assert rewards.rewards[0].fn.corpus == [["a road"], ["a house", "two trees"]]
    assert rewards.names == ["fitted"] and [e.key for e in rewards.regularisers] == ["mean_logit"]
    assert rewards.score(["two trees", "a lake"], [["x"]] * 2).total.tolist() == [1.0, 0.0]
    logits = torch.ones(2, 3, 4, requires_grad=True)
    loss, values = rewards.regularise(logits, torch.tensor([[1, 1, 0], [1, 0, 0]]).bool())
    assert loss.item() == pytest.approx(0.5 * 1.5) and values == {"mean_logit": pytest.approx(1.5)}
    loss.backward()
    assert logits.grad[0, 2].abs().sum() == 0 and logits.grad[0, 0].abs().sum() > 0
    only_regularisers = RewardSet([RewardConfig(name="mean_logit")], registry)
    with pytest.raises(RecipeError, match="no text reward"):
        only_regularisers.score(["a"], [["a"]])
    with pytest.raises(RecipeError, match=r"rewards\[0\].name: unknown reward 'nope'"):
        RewardSet([RewardConfig(name="nope")], registry)
