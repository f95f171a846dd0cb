"""CiderD against pycocoevalcap's Cider (CIDEr-D), sample by sample, on whitespace-tokenized text."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from pycocoevalcap.cider.cider import Cider
from pydantic import ValidationError

from rsforge.rewards import plugin
from rsforge.rewards.cider import CiderD
from rsforge.rewards.configs import CiderDConfig

CANDIDATES = [
    "two new buildings were built on the empty land",
    "the the the the the the",  # repeated words, clipped against the references
    "road",  # one word: no bigram
    "",  # empty candidate
    "a large building on the right was demolished and a parking lot appears in its place "
    "while the trees along the river on the left side of the image remain the same as before",
    "there is no difference",  # identical to one of its references
    "nothing like any reference at all",
    "trees trees near near the river river",
]
REFERENCES = [
    ["two buildings were built on the bare land", "some houses were constructed", "new buildings appear"],
    ["the road is the same", "the the scene is unchanged"],
    ["a road was built", "a new road appears across the field", "road"],
    ["there is no difference"],
    [
        "a building was demolished",
        "a parking lot replaces a large building on the right",
        "the building is gone",
        "trees along the river remain",
        "the factory on the right side was torn down",
    ],
    ["there is no difference", "the two scenes seem identical", "nothing has changed"],
    ["many trees were cut down", "the forest is gone"],
    ["the trees near the river were removed", "trees along the river disappeared"],
]


def coco_cider(candidates: list[str], references: list[list[str]]) -> np.ndarray:
    """Per-sample scores of pycocoevalcap's Cider on this corpus."""
    _, scores = Cider().compute_score(
        {i: refs for i, refs in enumerate(references)}, {i: [c] for i, c in enumerate(candidates)}
    )
    return np.asarray(scores)


def cider_d(**options) -> CiderD:
    return CiderD(CiderDConfig(name="cider_d", **options))


def test_equals_pycocoevalcap_per_sample():
    scores = cider_d()(CANDIDATES, REFERENCES)
    assert scores.shape == (len(CANDIDATES),) and scores.dtype == torch.float32
    np.testing.assert_allclose(scores.numpy(), coco_cider(CANDIDATES, REFERENCES), rtol=0, atol=1e-6)
    assert scores[3] == 0.0  # the empty candidate
    assert scores.max() > 1.0  # the test has teeth: some scores are far from 0


def test_equals_pycocoevalcap_on_a_random_corpus():
    rng = random.Random(0)
    words = ["a", "the", "building", "road", "river", "trees", "new", "was", "built", "near", "x", "y"]

    def sentence(longest: int) -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(0, longest)))

    candidates = [sentence(18) for _ in range(300)]
    references = [[sentence(18) for _ in range(rng.randint(1, 6))] for _ in range(300)]
    np.testing.assert_allclose(
        cider_d()(candidates, references).numpy(), coco_cider(candidates, references), rtol=0, atol=1e-6
    )


def test_sigma_is_the_length_penalty_width():
    candidates, references = ["a new road was built across the field"], [["a road", "a new road was built"]]
    candidates, references = candidates * 2, references * 2  # two images, so idf is not all zero
    references[1] = ["the trees are gone"]
    _, expected = Cider(sigma=2.0).compute_score(
        {i: r for i, r in enumerate(references)}, {i: [c] for i, c in enumerate(candidates)}
    )
    np.testing.assert_allclose(cider_d(sigma=2.0)(candidates, references).numpy(), expected, atol=1e-6)


def test_fit_fixes_document_frequencies_from_the_corpus():
    # Document frequencies and log(corpus size) depend only on the corpus references, so
    # pycocoevalcap's Cider run on the whole corpus gives each image exactly the score it should get
    # from a CiderD fitted on that corpus, whatever batch the image is later scored in.
    corpus = [*REFERENCES, ["a swimming pool was built"], ["the lake dried up", "the water is gone"]]
    candidates = [*CANDIDATES, "a pool appears", "the lake is dry now"]
    expected = coco_cider(candidates, corpus)
    reward = cider_d().fit(corpus)
    assert reward.fitted
    subset = [9, 0, 3, 4, 7]
    scores = reward([candidates[i] for i in subset], [corpus[i] for i in subset])
    np.testing.assert_allclose(scores.numpy(), expected[subset], rtol=0, atol=1e-6)
    # One sample alone scores the same: the batch no longer matters.
    alone = reward([candidates[4]], [corpus[4]])
    np.testing.assert_allclose(alone.numpy(), expected[[4]], rtol=0, atol=1e-6)


def test_fitted_scores_of_unseen_words_and_references():
    reward = cider_d().fit([["a road was built"], ["the trees were cut"], ["a building appears"]])
    # n-grams unseen in the corpus get df 0, i.e. the largest idf, log(3); no crash on new words.
    candidates = ["a brand new stadium", "a road was built"]
    scores = reward(candidates, [[c] for c in candidates])
    assert scores.shape == (2,) and torch.all(scores > 0)
    np.testing.assert_allclose(scores.numpy(), [10.0, 10.0], atol=1e-5)  # perfect matches, same length


def test_batch_shapes_and_errors():
    reward = cider_d()
    empty = reward([], [])
    assert empty.shape == (0,) and empty.dtype == torch.float32
    one = reward(["a road"], [["a road"]])  # one image: every idf is log(1) = 0
    assert one.tolist() == [0.0]
    with pytest.raises(ValueError, match="2 candidates but 1"):
        reward(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="sample 1 has no reference"):
        reward(["a", "b"], [["a"], []])
    with pytest.raises(TypeError, match="list of strings"):
        reward("a road", [["a road"]])
    with pytest.raises(ValueError, match="corpus is empty"):
        reward.fit([])


def test_other_n_gram_orders_run():
    for n in (1, 2, 3, 6):
        scores = cider_d(n=n)(CANDIDATES, REFERENCES)
        assert scores.shape == (len(CANDIDATES),) and torch.isfinite(scores).all()


def test_plugin_registers_cider_d():
    calls = []
    plugin.register_rewards(register=lambda name, **spec: calls.append((name, spec)))
    assert [name for name, _ in calls][:1] == ["cider_d"]
    spec = calls[0][1]
    assert spec["factory"] == "rsforge.rewards.cider:CiderD"
    assert spec["config"] == "rsforge.rewards.configs:CiderDConfig"
    config = CiderDConfig.model_validate({"name": "cider_d", **spec["example"]})
    assert (config.n, config.sigma, config.weight) == (4, 6.0, None)  # no weight given: the trainer's default
    with pytest.raises(ValidationError):
        CiderDConfig(name="cider_d", df="corpus")


def test_fitted_reward_caches_corpus_references_and_mixes_in_others():
    # SCST's shape: several rollouts per corpus image, plus a sample whose references are not in the
    # corpus (scored in full with the fitted df). All must equal pycocoevalcap on the corpus.
    corpus = [*REFERENCES, ["a swimming pool was built"]]
    reward = cider_d().fit(corpus)
    expected = {c: coco_cider([c] * len(corpus), corpus) for c in CANDIDATES}
    order = [4, 4, 0, 7, 4, 2]
    candidates = [CANDIDATES[i] for i in [0, 4, 1, 7, 6, 2]]
    scores = reward(candidates, [corpus[i] for i in order])
    np.testing.assert_allclose(scores.numpy(), [expected[c][i] for c, i in zip(candidates, order, strict=True)],
                               rtol=0, atol=1e-6)
    outside = [["a new road appears", "the two scenes seem identical"]]
    fresh = reward([CANDIDATES[2], CANDIDATES[2]], [corpus[2], *outside])
    rebuilt = cider_d().fit(corpus)
    rebuilt._bank = None  # the same fitted df without the cache: every sample counted in full
    np.testing.assert_allclose(fresh.numpy(), rebuilt([CANDIDATES[2]] * 2, [corpus[2], *outside]).numpy(),
                               rtol=0, atol=1e-6)
