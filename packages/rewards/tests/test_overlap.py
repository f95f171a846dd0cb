"""BLEU-4, ROUGE-L and METEOR equal pycocoevalcap's scorers sample by sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocoevalcap.bleu.bleu import Bleu as CocoBleu
from pycocoevalcap.meteor.meteor import Meteor as CocoMeteor
from pycocoevalcap.rouge.rouge import Rouge as CocoRouge

import rsforge.rewards.meteor as meteor_module
from rsforge.rewards.configs import BleuConfig, MeteorConfig, RougeLConfig
from rsforge.rewards.meteor import Meteor
from rsforge.rewards.overlap import Bleu, RougeL

CANDIDATES = [
    "two new buildings were built on the empty land",
    "the the the the",
    "road",
    "a building was demolished on the right and trees remain",
    "there is no difference",
    "nothing like any reference at all",
]
REFERENCES = [
    ["two buildings were built on the bare land", "some houses were constructed", "new buildings appear"],
    ["the road is the same", "the scene is unchanged"],
    ["a road was built", "a new road appears across the field"],
    ["a building was demolished", "a parking lot replaces a large building on the right", "trees remain"],
    ["there is no difference", "nothing has changed"],
    ["many trees were cut down"],
]


def coco(scorer, candidates=CANDIDATES, references=REFERENCES):
    return scorer.compute_score({i: r for i, r in enumerate(references)}, {i: [c] for i, c in enumerate(candidates)})


def test_bleu4_equals_pycocoevalcap():
    _, per_order = coco(CocoBleu(4))
    scores = Bleu(BleuConfig(name="bleu4"))(CANDIDATES, REFERENCES)
    assert scores.dtype == torch.float32 and scores.shape == (len(CANDIDATES),)
    np.testing.assert_allclose(scores.numpy(), per_order[3], atol=1e-6)
    assert scores[4] == pytest.approx(1.0) and scores[5] < 1e-3
    bleu2 = Bleu(BleuConfig(name="bleu4", n=2))(CANDIDATES, REFERENCES)
    np.testing.assert_allclose(bleu2.numpy(), per_order[1], atol=1e-6)


def test_rouge_l_equals_pycocoevalcap():
    _, expected = coco(CocoRouge())
    scores = RougeL(RougeLConfig(name="rouge_l"))(CANDIDATES, REFERENCES)
    np.testing.assert_allclose(scores.numpy(), expected, atol=1e-6)
    assert scores[4] == pytest.approx(1.0) and scores[5] == 0.0


def test_meteor_equals_pycocoevalcap_with_one_process(monkeypatch):
    coco_meteor = CocoMeteor()
    try:
        _, expected = coco(coco_meteor)
    finally:
        del coco_meteor
    spawned = []
    popen = meteor_module.subprocess.Popen

    def counting_popen(*args, **kwargs):
        spawned.append(args[0])
        return popen(*args, **kwargs)

    monkeypatch.setattr(meteor_module.subprocess, "Popen", counting_popen)
    with Meteor(MeteorConfig(name="meteor")) as reward:
        first = reward(CANDIDATES, REFERENCES)
        second = reward(CANDIDATES[:2], REFERENCES[:2])
        third = reward(["a road ||| with\nodd separators"], [["a road"]])  # protocol characters are cleaned
        process = reward._process
        assert reward.running
    assert len(spawned) == 1  # one JVM for three calls
    assert not reward.running and process.poll() is not None  # closed cleanly on exit
    np.testing.assert_allclose(first.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(second.numpy(), expected[:2], atol=1e-6)
    assert third.shape == (1,) and 0 < third[0] <= 1


def test_errors_name_the_reward():
    with pytest.raises(ValueError, match="bleu: 2 candidates but 1"):
        Bleu(BleuConfig(name="bleu4"))(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="rouge_l: sample 0 has no reference"):
        RougeL(RougeLConfig(name="rouge_l"))(["a"], [[]])
    with pytest.raises(FileNotFoundError, match=r"meteor\.java"):
        Meteor(MeteorConfig(name="meteor", java="/no/such/java"))(["a"], [["a"]])
