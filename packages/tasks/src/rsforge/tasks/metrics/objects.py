"""The InstructBLIP-SCST seed's object metrics of captions: oversights and hallucinations.

The seed's README ("Custom metrics (oversights, hallucinations)") reports, per dataset, the objects of
the ground truth that captions miss (oversights, lower is better) and the objects captions name that
the ground truth does not (hallucinations, lower is better); its code compares the lemmatised entity
lists of generated and reference captions per caption (`calculate_proportion` in the seed's earlier
`rewards_wip.py`). Here, per caption, with G the union of the entities its references name and C the
entities it names:

- oversights = |G - C| / |G|, averaged over the captions whose references name an entity;
- hallucinations = |C - G| / |C|, averaged over the captions that name an entity;

both fractions in [0, 1], 0 when no caption qualifies. `n_ground_truth` and `n_named` count the
captions each mean is over.

Which words are entities is the extractor's business, passed in as a function `text -> set of entities`:
this library does not import plugins. `registered_entities` fetches the `sde` reward's `entities`
through the plugin registry (rsforge-rewards registers it), and says so when none is registered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from rsforge.core.errors import RecipeError
from rsforge.core.plugins import PluginManager

log = logging.getLogger(__name__)

Entities = Callable[[str], set[str]]
ENTITY_REWARD = "sde"


def object_metrics(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]],
                   entities: Entities) -> dict[str, float]:
    """{"oversights", "hallucinations", "n_ground_truth", "n_named"} over the ids of `predictions`
    (each with its references in `references`)."""
    missed, invented = [], []
    for i, prediction in predictions.items():
        truth = set().union(*(entities(r) for r in references[i]))
        named = entities(prediction)
        if truth:
            missed.append(len(truth - named) / len(truth))
        if named:
            invented.append(len(named - truth) / len(named))
    return {"oversights": sum(missed) / len(missed) if missed else 0.0,
            "hallucinations": sum(invented) / len(invented) if invented else 0.0,
            "n_ground_truth": len(missed), "n_named": len(invented)}


def object_metrics_by_group(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]],
                            groups: Mapping[str, str], entities: Entities) -> dict[str, dict[str, float]]:
    """`object_metrics` over all ids ("all") and over each group of ids (`groups`: id -> group; ids it
    leaves out count in "all" only), as `caption_metrics_by_group` groups them."""
    scores = {"all": object_metrics(predictions, references, entities)}
    for name in sorted(set(groups.values())):
        ids = [i for i in predictions if groups.get(i) == name]
        scores[name] = object_metrics({i: predictions[i] for i in ids}, references, entities)
    return scores


def registered_entities(plugins: PluginManager | None = None) -> Entities | None:
    """The entity extractor of the registered `sde` reward (its `entities` method), or None, after a
    warning saying why, when no plugin registers one that has it."""
    plugins = plugins or PluginManager()
    try:
        spec = plugins.registry.get("reward", ENTITY_REWARD)
    except RecipeError:
        log.warning("object metrics (oversights, hallucinations) skipped: no '%s' reward is registered; install "
                    "rsforge-rewards to compute them", ENTITY_REWARD)
        return None
    reward = spec.load_factory()(spec.config(name=ENTITY_REWARD))
    extractor = getattr(reward, "entities", None)
    if not callable(extractor):
        log.warning("object metrics (oversights, hallucinations) skipped: the '%s' reward of %s has no entities() "
                    "method", ENTITY_REWARD, spec.distribution)
        return None
    return extractor
