"""Object coverage ("SDE") and counting accuracy over a remote-sensing object vocabulary.

Words are lowercased, stripped of punctuation and lemmatised by rule (plural and -ies/-ves forms are
tried against the vocabulary, so "houses" -> "house", "bushes" -> "bush", "factories" -> "factory",
while "grass" stays whole); no NLTK data is needed. Synonyms name one class ("house", "residence",
"building" -> building; "tree", "forest", "grass" -> vegetation), and multi-word names ("parking
lot", "bare land") are matched before single words.
"""

from __future__ import annotations

import re
import statistics
from abc import ABC, abstractmethod
from functools import cached_property
from typing import Any

import torch

from rsforge.core.interfaces import Reward
from rsforge.rewards.common import as_scores, check_batch
from rsforge.rewards.configs import CountingConfig, ObjectsConfig, SDEConfig

# class -> words or phrases naming it, singular
VOCABULARY: dict[str, tuple[str, ...]] = {
    "building": ("building", "house", "residence", "home", "dwelling", "structure", "apartment", "villa",
                 "cottage", "warehouse", "factory", "roof", "residential building", "residential area"),
    "road": ("road", "street", "highway", "lane", "avenue", "motorway", "roadway", "path", "driveway"),
    "vegetation": ("vegetation", "tree", "forest", "wood", "woodland", "grass", "grassland", "bush", "shrub",
                   "plant", "greenery", "green area", "green space", "lawn"),
    "water": ("water", "river", "lake", "pond", "pool", "swimming pool", "sea", "canal", "stream",
              "reservoir"),
    "parking": ("parking lot", "parking area", "parking space", "car park", "parking"),
    "bare_land": ("bare land", "bare ground", "bare soil", "empty land", "vacant land", "open land",
                  "wasteland", "soil", "dirt", "sand"),
    "farmland": ("farmland", "field", "crop", "cropland", "farm", "agricultural land", "paddy", "orchard"),
    "vehicle": ("car", "vehicle", "truck", "bus"),
    "railway": ("railway", "railroad", "rail", "train track"),
    "bridge": ("bridge", "overpass"),
    "sports": ("playground", "stadium", "court", "sports field", "tennis court", "running track"),
}

NUMBERS = {"a": 1, "an": 1, "one": 1, "single": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
           "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "dozen": 12, "pair": 2,
           "couple": 2, "both": 2}
# Words a number may not be separated from its object by ("a building was ... two" is not a count).
_BREAKS = {"was", "were", "is", "are", "be", "been", "has", "have", "had", "and", "or", "of", "in", "on", "at",
           "the", "to", "by", "with", "from", "near", "into", "than", "but", "while"}
_MAX_MODIFIERS = 2  # "two new large buildings": up to two words between a number and its object
_WORD = re.compile(r"[a-z0-9]+")


class ObjectVocabulary:
    """Finds object classes (and counted ones) in captions."""

    def __init__(self, extra: dict[str, list[str]] | None = None) -> None:
        names = {cls: list(words) for cls, words in VOCABULARY.items()}
        for cls, words in (extra or {}).items():
            names.setdefault(cls, []).extend(w.lower() for w in words)
        self.phrases: dict[tuple[str, ...], str] = {}
        for cls, words in names.items():
            for word in words:
                self.phrases[tuple(word.split())] = cls
        self.longest = max(len(p) for p in self.phrases)

    @cached_property
    def lemmas(self) -> set[str]:
        return {w for phrase in self.phrases for w in phrase}

    def lemma(self, word: str) -> str:
        """The vocabulary word that `word` inflects, else `word` itself."""
        if word in self.lemmas or len(word) < 3:
            return word
        options = []
        if word.endswith("ies"):
            options.append(word[:-3] + "y")
        if word.endswith("ves"):
            options += [word[:-3] + "f", word[:-3] + "fe"]
        if word.endswith("es"):
            options.append(word[:-2])
        if word.endswith("s") and not word.endswith("ss"):
            options.append(word[:-1])
        return next((o for o in options if o in self.lemmas), word)

    def words(self, text: str) -> list[str]:
        return [self.lemma(w) for w in _WORD.findall(text.lower())]

    def mentions(self, text: str) -> list[tuple[int, int, str]]:
        """(first word, end word, class) of every object named, longest phrase first, left to right."""
        words, found, i = self.words(text), [], 0
        while i < len(words):
            for size in range(min(self.longest, len(words) - i), 0, -1):
                cls = self.phrases.get(tuple(words[i : i + size]))
                if cls is not None:
                    found.append((i, i + size, cls))
                    i += size
                    break
            else:
                i += 1
        return found

    def classes(self, text: str) -> set[str]:
        return {cls for _, _, cls in self.mentions(text)}

    def counts(self, text: str) -> dict[str, int]:
        """Class -> how many the text counts ("two new buildings", "3 houses", "a road"), summed over
        the text's counted mentions; objects named without a number ("some trees") are not counted."""
        words = self.words(text)
        counts: dict[str, int] = {}
        for start, _, cls in self.mentions(text):
            for back in range(1, _MAX_MODIFIERS + 2):
                at = start - back
                if at < 0:
                    break
                word = words[at]
                number = int(word) if word.isdigit() else NUMBERS.get(word)
                if number is not None:
                    counts[cls] = counts.get(cls, 0) + number
                    break
                if word in _BREAKS or word in self.lemmas:
                    break
        return counts


class _ObjectReward(Reward, ABC):
    name = ""

    def __init__(self, config: ObjectsConfig) -> None:
        self.config = config
        self.vocabulary = ObjectVocabulary(config.synonyms)

    def __call__(self, candidates: list[str], references: list[list[str]], extras: dict[str, Any] | None = None
                 ) -> torch.Tensor:
        check_batch(self.name, candidates, references)
        return as_scores([self.score(c, refs) for c, refs in zip(candidates, references, strict=True)])

    @abstractmethod
    def score(self, candidate: str, references: list[str]) -> float:
        """One candidate's score against its references."""


class ObjectCoverage(_ObjectReward):
    """SDE: the share of the object classes named by the references (any of them) that the candidate
    names too, in [0, 1]. References naming no object: `no_objects` if the candidate names none either,
    else 0 (it names objects in an unchanged scene)."""

    name = "sde"
    config: SDEConfig

    def score(self, candidate: str, references: list[str]) -> float:
        wanted = set().union(*(self.vocabulary.classes(r) for r in references))
        named = self.vocabulary.classes(candidate)
        if not wanted:
            return self.config.no_objects if not named else 0.0
        return len(wanted & named) / len(wanted)


class CountingAccuracy(_ObjectReward):
    """1 - the mean normalised count error over the classes the references count: per class
    |c - r| / max(c, r), with r the median of the references that count the class and c the
    candidate's count (error 1 where the candidate gives no number). 1 when the references count
    nothing, so uncounted captions leave the combined reward alone."""

    name = "counting"
    config: CountingConfig

    def score(self, candidate: str, references: list[str]) -> float:
        per_reference = [self.vocabulary.counts(r) for r in references]
        wanted = {cls for counts in per_reference for cls in counts}
        if not wanted:
            return 1.0
        got = self.vocabulary.counts(candidate)
        errors = []
        for cls in wanted:
            target = statistics.median(c[cls] for c in per_reference if cls in c)
            have = got.get(cls)
            errors.append(1.0 if have is None else abs(have - target) / max(have, target))
        return 1.0 - sum(errors) / len(errors)
