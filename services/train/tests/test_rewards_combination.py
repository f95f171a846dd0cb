"""RewardSet: building from a recipe's reward list, PTB tokenization of what rewards read, the running
normalisations (zscore, the seed's minmax), weights, regularisers, and the running statistics' round trip
through a state dict. Uses in-process reward plugins, so the test needs no plugin package."""

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


class Echo(Reward):
    """Raw reward 0; keeps what it was called with."""

    def __init__(self, config):
        self.seen = []

    def __call__(self, candidates, references, extras=None):
        self.seen.append((list(candidates), [list(r) for r in references]))
        return torch.zeros(len(candidates))


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
        register("echo", factory=f"{__name__}:Echo", config=RewardConfig)
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
               ScaledConfig(name="words", weight=0.5, normalise="none")]
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
    configs = [RewardConfig(name="fitted", normalise="none"), RewardConfig(name="mean_logit", weight=0.5)]
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


def test_minmax_is_the_seeds_running_min_max_with_uniform_weights(registry):
    """InstructBLIP-SCST's `normalize_score`: min and max over everything seen, this batch included, then
    (x - min) / (max - min), 0 while min == max; unset weights are 1/N over the N text rewards."""
    configs = [ScaledConfig(name="words", normalise="minmax"),
               ScaledConfig(name="words", scale=10.0, normalise="minmax"), RewardConfig(name="mean_logit", weight=1e-4)]
    rewards = RewardSet(configs, registry)
    assert rewards.weights == {"words_1": 0.5, "words_2": 0.5}
    assert rewards.regularisers[0].weight == 1e-4
    first = rewards.score(["a b", "a b"], [["x"]] * 2)
    assert first.normalised["words_1"].tolist() == [0.0, 0.0]  # one value seen: no range yet
    second = rewards.score(["a", "a b c", "a b"], [["x"]] * 3)
    torch.testing.assert_close(second.normalised["words_1"], torch.tensor([0.0, 1.0, 0.5]))
    torch.testing.assert_close(second.total, torch.tensor([0.0, 1.0, 0.5]))  # both scale alike, 0.5 each
    third = rewards.score(["a b c d e"], [["x"]])  # widens the range to [1, 5]
    assert third.normalised["words_2"].tolist() == [1.0]
    assert rewards.score(["a b c"], [["x"]], update=False).normalised["words_1"].tolist() == [0.5]
    state = rewards.state_dict()
    assert state["normalisers"]["words_1"] == {"normalise": "minmax", "low": 1.0, "high": 5.0}
    restored = RewardSet(configs, registry)
    restored.load_state_dict(state)
    assert restored.state_dict() == state
    zscored = RewardSet([ScaledConfig(name="words", normalise="zscore"),
                         ScaledConfig(name="words", normalise="minmax")], registry)
    with pytest.raises(ValueError, match="do not match"):
        zscored.load_state_dict(state)
    # Explicit weights win; a zscore reward left unset weighs 1.
    mixed = RewardSet([ScaledConfig(name="words", normalise="minmax", weight=2.0), ScaledConfig(name="words")],
                      registry)
    assert mixed.weights == {"words_1": 2.0, "words_2": 1.0}
    with pytest.raises(ValueError, match="norm_momentum: only `normalise: zscore`"):
        RewardConfig(name="words", normalise="minmax", norm_momentum=0.1)


def test_rewards_read_ptb_tokenized_text(registry):
    """Candidates, references and the fitted corpus reach rewards as caption evaluation tokenizes them."""
    rewards = RewardSet([RewardConfig(name="echo"), RewardConfig(name="fitted", normalise="none")], registry,
                        corpus=[["The road's edge (left)."], ["Two trees."]])
    assert rewards.rewards[1].fn.corpus == [["the road 's edge -lrb- left -rrb-"], ["two trees"]]
    rewards.score(["Some trees were cut down.", "A new building, built in 2020!"], [["Trees: cut."], ["X-ray"]])
    assert rewards.rewards[0].fn.seen == [(["some trees were cut down", "a new building built in 2020"],
                                           [["trees cut"], ["x-ray"]])]
