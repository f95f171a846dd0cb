"""Object rewards: the seed's SDE (scene description exhaustiveness) and the object coverage variant.

Both compare object classes found by `rsforge.rewards.vocabulary.ObjectVocabulary` (lemmatised words,
synonyms from the vocabulary file). Captions are expected PTB-normalised (lower case, punctuation
removed); the vocabulary lower-cases and splits on non-alphanumerics anyway, so raw text gives the same
classes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from rsforge.core.interfaces import Reward
from rsforge.rewards.common import as_scores, check_batch
from rsforge.rewards.configs import ObjectCoverageConfig, ObjectsConfig, SDEConfig
from rsforge.rewards.vocabulary import ObjectVocabulary, load_classes

OBJECT_COUNTS = "object_counts"


class ObjectReward(Reward, ABC):
    """A reward over the object classes of the vocabulary its config names."""

    name = ""

    def __init__(self, config: ObjectsConfig) -> None:
        self.config = config
        self.vocabulary = ObjectVocabulary(load_classes(config.vocabulary), config.synonyms)

    def entities(self, text: str) -> set[str]:
        """The object classes `text` names (lemmatised, synonyms merged)."""
        return self.vocabulary.entities(text)

    def __call__(self, candidates: Sequence[str], references: Sequence[Sequence[str]],
                 extras: dict[str, Any] | None = None) -> torch.Tensor:
        check_batch(self.name, candidates, references)
        rows = self.extra_rows(len(candidates), extras)
        return as_scores([self.score(c, list(refs), row)
                          for c, refs, row in zip(candidates, references, rows, strict=True)])

    def extra_rows(self, n: int, extras: dict[str, Any] | None) -> Sequence[Any]:
        """What `score` gets besides the texts, one per candidate; None by default."""
        return [None] * n

    @abstractmethod
    def score(self, candidate: str, references: list[str], extra: Any) -> float:
        """One candidate's score against its references."""


class SceneDescriptionExhaustiveness(ObjectReward):
    """SDE, the seed's definition (InstructBLIP-SCST README, "SDE: Scene Description Exhaustiveness",
    and its worked example): the proportion of the ground-truth entities that the generated caption
    names, |E_gt & E_caption| / |E_gt|, in [0, 1]. E_gt is the union of the entities of all reference
    captions and, where `extras["object_counts"]` gives the image's count dictionary (class -> count),
    of the classes counted there (count > 0). Entities are lemmatised, and synonyms name one entity
    (vocabulary file). "There is a forest." against "There is a forest and a river." and "There is a
    forest, a river and a road." scores 1/3.

    Differences from the seed, by choice: the seed extracts entities with the FACTUAL scene-graph
    parser (`scenegraphmaker`, not in its public code) and lemmatises with WordNet; here entities are
    the classes of a closed vocabulary, so words outside it are no entities. No ground-truth entity:
    0, as the seed's `calculate_proportion` returns for an empty list.

    `extras["object_counts"]` (optional): a sequence with one entry per candidate, each a mapping
    class label -> count (dataset labels such as "storage-tank" or "small_vehicle" map through the
    vocabulary) or None."""

    name = "sde"
    reads_extras = frozenset({OBJECT_COUNTS})
    config: SDEConfig

    def extra_rows(self, n: int, extras: dict[str, Any] | None) -> Sequence[Any]:
        counts = (extras or {}).get(OBJECT_COUNTS)
        if counts is None:
            return [None] * n
        if len(counts) != n:
            raise ValueError(f"sde: extras['{OBJECT_COUNTS}'] has {len(counts)} entries for {n} candidates")
        return counts

    def ground_truth(self, references: list[str], counts: Mapping[str, float] | None = None) -> set[str]:
        """The ground-truth entities: those the references name, and the classes `counts` counts."""
        found = set().union(*(self.entities(r) for r in references))
        for label, count in (counts or {}).items():
            if count and count > 0:
                # Dataset labels join words with "-" or "_" ("storage-tank", "small_vehicle").
                found |= self.entities(label.replace("-", " ").replace("_", " "))
        return found

    def score(self, candidate: str, references: list[str], extra: Mapping[str, float] | None) -> float:
        wanted = self.ground_truth(references, extra)
        if not wanted:
            return 0.0
        return len(wanted & self.entities(candidate)) / len(wanted)


class ObjectCoverage(ObjectReward):
    """The share of the object classes named by the references (any of them) that the candidate names
    too, in [0, 1]; when the references name no object, `no_objects` if the candidate names none either,
    else 0 (it names objects in, e.g., an unchanged scene). SDE without count dictionaries, with a
    choice for captions of empty scenes."""

    name = "object_coverage"
    config: ObjectCoverageConfig

    def score(self, candidate: str, references: list[str], extra: Any) -> float:
        wanted = set().union(*(self.entities(r) for r in references))
        named = self.entities(candidate)
        if not wanted:
            return self.config.no_objects if not named else 0.0
        return len(wanted & named) / len(wanted)
