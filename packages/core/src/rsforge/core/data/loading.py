"""Load a recipe's dataset split through the registered dataset readers."""

from __future__ import annotations

from rsforge.core.data.schema import Sample
from rsforge.core.plugins import PluginManager
from rsforge.core.recipe import Recipe


def load_split(recipe: Recipe, plugins: PluginManager, split: str) -> list[Sample]:
    if recipe.data is None:
        raise ValueError(f"recipe '{recipe.name}' has no data section")
    spec = plugins.registry.get("dataset", recipe.data.name, path="data.name")
    return spec.load_factory()(recipe.data, split)


def training_texts(samples: list[Sample]) -> list[str]:
    """Every turn's text: what a part that learns a vocabulary must cover."""
    return [turn.text for sample in samples for turn in sample.conversation]
