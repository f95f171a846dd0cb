"""Length (token count and target closeness), object coverage, count accuracy and word KL on
hand-checked cases, and the batch contract of every text reward that needs no model."""

from __future__ import annotations

import math

import pytest
import torch

from rsforge.rewards.configs import (
    CountingConfig,
    LengthConfig,
    LengthTargetConfig,
    ObjectCoverageConfig,
    SDEConfig,
    WordKLConfig,
)
from rsforge.rewards.counting import CountAbsError, CountAccuracy, CountSignedError
from rsforge.rewards.length import LengthReward, TokenCount
from rsforge.rewards.objects import ObjectCoverage, SceneDescriptionExhaustiveness
from rsforge.rewards.word_kl import WordKL


def test_length_counts_tokens():
    length = TokenCount(LengthConfig(name="length"))
    scores = length(["three tennis courts are next to a road", "a road", ""], [["x"]] * 3)
    assert scores.tolist() == [8.0, 2.0, 0.0]


def test_length_targets():
    refs = [["a b c", "a b c d e f g"]]  # 3 and 7 words
    closest = LengthReward(LengthTargetConfig(name="length_target", sigma=1.0))
    assert closest(["w w w"], refs).item() == pytest.approx(1.0)
    assert closest(["w w w w w"], refs).item() == pytest.approx(math.exp(-2.0))  # 2 off either
    mean = LengthReward(LengthTargetConfig(name="length_target", target="mean", sigma=2.0))
    assert mean(["w w w w w"], refs).item() == pytest.approx(1.0)
    assert mean(["w"], refs).item() == pytest.approx(math.exp(-2.0))
    fixed = LengthReward(LengthTargetConfig(name="length_target", target=2, sigma=1.0))
    scores = fixed(["a b", "a b c", ""], [["x"]] * 3)
    assert scores.tolist() == pytest.approx([1.0, math.exp(-0.5), math.exp(-2.0)])


def test_object_coverage():
    coverage = ObjectCoverage(ObjectCoverageConfig(name="object_coverage"))
    refs = [["two houses were built near the road", "new houses and a street appear", "trees were cut"]]
    # Reference classes: house, road (street), tree.
    assert coverage(["some residences appeared"], refs).item() == pytest.approx(1 / 3)
    assert coverage(["a house by a street and the trees"], refs).item() == pytest.approx(1.0)
    assert coverage(["a forest by a highway"], refs).item() == 0.0  # forest is not tree, highway not road
    unchanged = [["there is no change", "nothing has changed"]]
    assert coverage(["there is no difference"], unchanged).item() == 1.0
    assert coverage(["a new building"], unchanged).item() == 0.0
    half = ObjectCoverage(ObjectCoverageConfig(name="object_coverage", no_objects=0.5))
    assert half(["no change"], unchanged).item() == 0.5


def test_count_accuracy():
    counting = CountAccuracy(CountingConfig(name="count_accuracy"))
    refs = [["two buildings were built", "2 buildings appear", "some buildings were added"]]  # building: 2
    scores = counting(["two buildings", "3 buildings", "buildings appeared", "2 buildings and 4 trees"], refs * 4)
    # |3 - 2| / 3 = 1/3 off; no number: full error; classes the references do not count are ignored.
    assert scores.tolist() == pytest.approx([1.0, 2 / 3, 0.0, 1.0])
    # The references count nothing ("some" is no count): every caption is neutral.
    assert counting(["three roads"], [["some trees were cut"]]).item() == 1.0
    assert counting(["two buildings"], [["two buildings and 1 road"]]).item() == pytest.approx(0.5)


def test_count_accuracy_is_not_fooled_by_storage_tanks_or_a_few():
    counting = CountAccuracy(CountingConfig(name="count_accuracy"))
    # Before, "storage tank" was not in the vocabulary: nothing counted, a perfect score.
    assert counting(["six storage tanks"], [["seven storage tanks"]]).item() == pytest.approx(1 - 1 / 7)
    # Before, "a few" counted as one, a perfect score against "one building".
    assert counting(["a few new buildings"], [["one new building"]]).item() == 0.0


def test_word_kl():
    kl = WordKL(WordKLConfig(name="word_kl"))
    refs = [["a b b c", "c a b b"]]
    assert kl(["b a c b"], refs).item() == pytest.approx(1.0)  # same word distribution, other order
    assert WordKL(WordKLConfig(name="word_kl", form="neg"))(["b a c b"], refs).item() == pytest.approx(0.0, abs=1e-7)
    close, far, off = kl(["a b c"], refs * 1).item(), kl(["a a a"], refs).item(), kl(["x y z"], refs).item()
    assert 1.0 > close > far > off > 0.0
    assert kl([""], refs).item() == pytest.approx(close)  # no words: uniform, as "a b c" over this vocabulary
    assert WordKL(WordKLConfig(name="word_kl", form="neg"))(["x"], refs).item() < 0


@pytest.mark.parametrize("reward", [
    TokenCount(LengthConfig(name="length")), LengthReward(LengthTargetConfig(name="length_target")),
    SceneDescriptionExhaustiveness(SDEConfig(name="sde")), ObjectCoverage(ObjectCoverageConfig(name="object_coverage")),
    CountAbsError(CountingConfig(name="count_abs_error")), CountSignedError(CountingConfig(name="count_signed_error")),
    CountAccuracy(CountingConfig(name="count_accuracy")), WordKL(WordKLConfig(name="word_kl")),
], ids=lambda r: type(r).__name__)
def test_batch_contract(reward):
    scores = reward(["a road", "b"], [["a road"], ["c", "d"]])
    assert scores.shape == (2,) and scores.dtype == torch.float32
    assert reward([], []).shape == (0,)
    with pytest.raises(ValueError, match="2 candidates but 1"):
        reward(["a", "b"], [["a"]])
    with pytest.raises(TypeError, match="list of strings"):
        reward("a road", [["a road"]])
