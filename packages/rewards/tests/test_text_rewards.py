"""Length, SDE object coverage, counting and NKL on hand-checked cases."""

from __future__ import annotations

import math

import pytest
import torch

from rsforge.rewards.configs import CountingConfig, LengthConfig, NKLConfig, SDEConfig
from rsforge.rewards.length import LengthReward
from rsforge.rewards.nkl import NKL
from rsforge.rewards.objects import CountingAccuracy, ObjectCoverage, ObjectVocabulary


def test_length_targets():
    refs = [["a b c", "a b c d e f g"]]  # 3 and 7 words
    closest = LengthReward(LengthConfig(name="length", sigma=1.0))
    assert closest(["w w w"], refs).item() == pytest.approx(1.0)
    assert closest(["w w w w w"], refs).item() == pytest.approx(math.exp(-2.0))  # 2 off either
    mean = LengthReward(LengthConfig(name="length", target="mean", sigma=2.0))
    assert mean(["w w w w w"], refs).item() == pytest.approx(1.0)
    assert mean(["w"], refs).item() == pytest.approx(math.exp(-2.0))
    fixed = LengthReward(LengthConfig(name="length", target=2, sigma=1.0))
    scores = fixed(["a b", "a b c", ""], [["x"]] * 3)
    assert scores.tolist() == pytest.approx([1.0, math.exp(-0.5), math.exp(-2.0)])


def test_vocabulary_lemmas_synonyms_and_phrases():
    vocabulary = ObjectVocabulary()
    assert vocabulary.words("Houses, bushes; FACTORIES and woods!") == ["house", "bush", "factory", "and", "wood"]
    assert vocabulary.lemma("grass") == "grass" and vocabulary.lemma("buses") == "bus"
    assert vocabulary.classes("three residences near a forest") == {"building", "vegetation"}
    assert vocabulary.classes("a parking lot replaced the bare land") == {"parking", "bare_land"}
    assert vocabulary.classes("the lot is bare") == set()  # words of a phrase alone name nothing
    extended = ObjectVocabulary({"solar": ["solar panel"], "building": ["hangar"]})
    assert extended.classes("two solar panels and a hangar") == {"solar", "building"}


def test_sde_coverage():
    sde = ObjectCoverage(SDEConfig(name="sde"))
    refs = [["two houses were built near the road", "new buildings and a street appear", "trees were cut"]]
    # Reference classes: building, road, vegetation.
    assert sde(["some residences appeared"], refs).item() == pytest.approx(1 / 3)
    assert sde(["a house by a highway and the forest"], refs).item() == pytest.approx(1.0)
    assert sde(["a lake dried up"], refs).item() == 0.0
    unchanged = [["there is no change", "nothing has changed"]]
    assert sde(["there is no difference"], unchanged).item() == 1.0
    assert sde(["a new building"], unchanged).item() == 0.0
    assert ObjectCoverage(SDEConfig(name="sde", no_objects=0.5))(["no change"], unchanged).item() == 0.5


def test_counting_words_and_digits():
    vocabulary = ObjectVocabulary()
    assert vocabulary.counts("two new buildings and 3 houses") == {"building": 5}
    assert vocabulary.counts("a road was built and 12 trees were cut") == {"road": 1, "vegetation": 12}
    assert vocabulary.counts("some trees and many houses") == {}
    assert vocabulary.counts("a building was torn down and two of them remain") == {"building": 1}
    counting = CountingAccuracy(CountingConfig(name="counting"))
    refs = [["two buildings were built", "2 houses appear", "some buildings were added"]]  # building: 2
    scores = counting(["two houses", "3 buildings", "buildings appeared", "2 residences and 4 trees"], refs * 4)
    # |3 - 2| / 3 = 1/3 off; no number: full error; classes the references do not count are ignored.
    assert scores.tolist() == pytest.approx([1.0, 2 / 3, 0.0, 1.0])
    # The references count nothing: every caption is neutral.
    assert counting(["three roads"], [["some trees were cut"]]).item() == 1.0
    two_classes = counting(["two buildings"], [["two buildings and a road"]])
    assert two_classes.item() == pytest.approx(0.5)


def test_nkl():
    nkl = NKL(NKLConfig(name="nkl"))
    refs = [["a b b c", "c a b b"]]
    assert nkl(["b a c b"], refs).item() == pytest.approx(1.0)  # same word distribution, other order
    assert NKL(NKLConfig(name="nkl", form="neg"))(["b a c b"], refs).item() == pytest.approx(0.0, abs=1e-7)
    close, far, off = nkl(["a b c"], refs * 1).item(), nkl(["a a a"], refs).item(), nkl(["x y z"], refs).item()
    assert 1.0 > close > far > off > 0.0
    assert nkl([""], refs).item() == pytest.approx(close)  # no words: uniform, as "a b c" over this vocabulary
    assert NKL(NKLConfig(name="nkl", form="neg"))(["x"], refs).item() < 0


def test_batch_contract():
    for reward in (LengthReward(LengthConfig(name="length")), ObjectCoverage(SDEConfig(name="sde")),
                   CountingAccuracy(CountingConfig(name="counting")), NKL(NKLConfig(name="nkl"))):
        scores = reward(["a road", "b"], [["a road"], ["c", "d"]])
        assert scores.shape == (2,) and scores.dtype == torch.float32
        assert reward([], []).shape == (0,)
        with pytest.raises(ValueError, match="2 candidates but 1"):
            reward(["a", "b"], [["a"]])
        with pytest.raises(TypeError, match="list of strings"):
            reward("a road", [["a road"]])
