from collections import Counter

import pytest

from rsforge.core.config import DatasetConfig
from rsforge.core.data.loading import mix
from rsforge.core.data.schema import Sample, Turn
from rsforge.core.errors import RecipeError
from rsforge.core.recipe import parse_recipe
from rsforge.core.registry import PartSpec

from .toy_parts import toy_recipe


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


def test_data_takes_one_dataset_or_a_list_and_prompts_override(toy_plugins):
    toy_plugins.registry.add(PartSpec("dataset", "toyset", "toy:Reader", DatasetConfig, "toy-dist"))
    one = parse_recipe(toy_recipe(data={"name": "toyset"}), toy_plugins.registry)
    many = parse_recipe(toy_recipe(data=[{"name": "toyset"}, {"name": "toyset", "weight": 2}],
                                   prompts={"vqa": "answer briefly"}), toy_plugins.registry)
    assert len(one.data) == 1 and [d.weight for d in many.data] == [1.0, 2.0]
    assert many.prompts == {"vqa": "answer briefly"} and "prompts" in many.to_dict()
    with pytest.raises(RecipeError, match=r"data\[1\]\.weight: Input should be greater than 0"):
        parse_recipe(toy_recipe(data=[{"name": "toyset"}, {"name": "toyset", "weight": 0}]), toy_plugins.registry)
    with pytest.raises(RecipeError, match="prompts: expected a mapping"):
        parse_recipe(toy_recipe(prompts=["x"]), toy_plugins.registry)
