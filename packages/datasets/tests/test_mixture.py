from collections import Counter

from rsforge.core.sample import Sample, Turn
from rsforge.datasets.loading import mix


def _samples(tag: str, n: int) -> list[Sample]:
    return [Sample(f"{tag}{i}", ("a.png",), [Turn("user", "q"), Turn("assistant", tag)]) for i in range(n)]


def test_mixture_follows_the_weights_and_is_seeded():
    parts = [_samples("a", 100), _samples("b", 20)]
    mixed = mix(parts, [1.0, 1.0], seed=0)
    counts = Counter(s.answer for s in mixed)
    assert counts == {"a": 60, "b": 60}  # equal shares of all 120: "a" subsampled, "b" repeated 3x
    assert len({s.id for s in mixed if s.answer == "a"}) == 60
    assert [s.id for s in mix(parts, [1.0, 1.0], seed=0)] == [s.id for s in mixed]
    assert Counter(s.answer for s in mix(parts, [3.0, 1.0], seed=0)) == {"a": 90, "b": 30}


def test_a_dataset_without_samples_in_the_split_takes_no_share():
    """With one train-only and one test-only dataset, training used to load 2 of 5 samples."""
    mixed = mix([_samples("a", 5), []], [1.0, 1.0], seed=0)
    assert sorted(s.id for s in mixed) == [f"a{i}" for i in range(5)]
