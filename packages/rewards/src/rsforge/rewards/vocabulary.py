"""The object vocabulary of the object and counting rewards: which classes a caption names, and how
many of each it counts.

The classes and their synonyms come from a JSON file, by default the one shipped with this package
(`data/objects.json`: the objects of RSICD, UCM-Captions and VRSBench). Words are lower-cased and
lemmatised by rule: plural forms (-s, -es, -ies, -ves) are tried against the vocabulary's words, so
"houses" -> "house", "factories" -> "factory", "beaches" -> "beach", while "grass" and "tennis" stay
whole. The seed lemmatises with NLTK's WordNet; rules over a closed vocabulary need no NLTK data and
give the same lemma for every word the vocabulary holds. Multi-word names ("storage tank", "parking
lot") are matched before single words, so "storage tanks" is one storage tank, not a tank and
something else.
"""

from __future__ import annotations

import json
import re
import statistics
from functools import cached_property
from importlib.resources import files
from pathlib import Path

_WORD = re.compile(r"[a-z0-9]+")
_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
          "seventeen eighteen nineteen").split()
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
_NUMBER_WORDS = {w: i for i, w in enumerate(_UNITS)} | _TENS | {"single": 1, "both": 2, "dozen": 12}
# Quantity nouns counted through "of": "a pair of tennis courts" is two.
_COUNTED_OF = {"pair": 2, "couple": 2, "dozen": 12}
# Quantifiers that say "more than one" without a number. They are uncertain counts: not one (an article
# does not count either), not any number, so the counting rewards leave them out (see `counts`).
UNCERTAIN = frozenset({"few", "several", "some", "many", "numerous", "multiple", "various", "countless", "lots",
                       "lot", "plenty", "dozens", "hundreds", "thousands", "number", "more", "fewer"})
# Words a number may not be separated from its object by: "a building was built and two ..." does not
# count buildings, "one of the roads" does not count roads.
_BREAKS = frozenset({"was", "were", "is", "are", "be", "been", "has", "have", "had", "and", "or", "of", "in", "on",
                     "at", "the", "to", "by", "with", "from", "near", "into", "than", "but", "while", "there"})
_MAX_MODIFIERS = 3  # "seven same cylinder storage tanks": up to three words between a number and its object


def builtin_vocabulary() -> Path:
    """The JSON vocabulary shipped with rsforge-rewards."""
    return Path(str(files("rsforge.rewards") / "data" / "objects.json"))


def load_classes(path: str | Path | None = None) -> dict[str, list[str]]:
    """class -> the phrases naming it (the class name first), from a JSON file `{"classes": {class:
    [phrases]}}`; the built-in file when `path` is None."""
    source = Path(path) if path is not None else builtin_vocabulary()
    data = json.loads(source.read_text(encoding="utf-8"))
    classes = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(classes, dict) or not classes:
        raise ValueError(f"{source}: an object vocabulary is a JSON object with a non-empty 'classes' mapping")
    out = {}
    for name, phrases in classes.items():
        if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
            raise ValueError(f"{source}: class {name!r} must map to a list of phrases")
        out[name.lower()] = [name.lower(), *(p.lower() for p in phrases)]
    return out


class ObjectVocabulary:
    """Finds the object classes a caption names, and counts."""

    def __init__(self, classes: dict[str, list[str]] | None = None, extra: dict[str, list[str]] | None = None) -> None:
        """`classes`: class -> phrases (default: the built-in file); `extra`: more classes or phrases,
        merged in."""
        names = {cls: list(words) for cls, words in (classes or load_classes()).items()}
        for cls, words in (extra or {}).items():
            names.setdefault(cls.lower(), [cls.lower()]).extend(w.lower() for w in words)
        self.phrases: dict[tuple[str, ...], str] = {}
        for cls, words in names.items():
            for word in words:
                phrase = tuple(_WORD.findall(word))
                other = self.phrases.setdefault(phrase, cls)
                if other != cls:  # one phrase naming two classes would make the entity depend on file order
                    raise ValueError(f"object vocabulary: {word!r} names both {other!r} and {cls!r}")
        self.longest = max(len(p) for p in self.phrases)

    @cached_property
    def lemmas(self) -> frozenset[str]:
        return frozenset(w for phrase in self.phrases for w in phrase)

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

    def _mentions(self, words: list[str]) -> list[tuple[int, int, str]]:
        """(first word, end word, class) of every object named, longest phrase first, left to right."""
        found, i = [], 0
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

    def entities(self, text: str) -> set[str]:
        """The object classes `text` names."""
        return {cls for _, _, cls in self._mentions(self.words(text))}

    def counts(self, text: str) -> dict[str, int | None]:
        """Class -> how many `text` counts, for the classes it gives a quantity for: an exact number
        ("seven storage tanks", "3 houses", "twenty one cars", "a pair of courts"), summed over the
        class's mentions, or None where a mention is uncertain ("a few buildings", "several ships",
        "many trees"). Objects named without a quantity ("trees", "a road") are left out: an article
        names a thing more often than it counts one ("a forest", "a residential area")."""
        words = self.words(text)
        mentions = self._mentions(words)
        named = {at for start, end, _ in mentions for at in range(start, end)}
        counts: dict[str, int | None] = {}
        for start, _, cls in mentions:
            quantity = self._quantity(words, start, named)
            if quantity is None:
                continue
            previous = counts.get(cls, 0)
            counts[cls] = None if quantity == "uncertain" or previous is None else previous + quantity
        return counts

    def _quantity(self, words: list[str], start: int, named: set[int]) -> int | str | None:
        """The number before the mention starting at `start`, "uncertain", or None when there is none;
        `named`: the positions of words that name an object (a quantity does not reach past one)."""
        for at in range(start - 1, max(start - _MAX_MODIFIERS - 2, -1), -1):
            word = words[at]
            if word == "of" and at > 0 and words[at - 1] in _COUNTED_OF:
                return _COUNTED_OF[words[at - 1]]
            if word == "of" and at > 0 and words[at - 1] in UNCERTAIN:  # "lots of", "a number of"
                return "uncertain"
            number = _number_ending_at(words, at)
            if number is not None:
                return number
            if word in _BREAKS or at in named:  # "lot" of "parking lot" is an object, not "a lot"
                return None
            if word in UNCERTAIN:
                return "uncertain"
        return None


def _number_ending_at(words: list[str], at: int) -> int | None:
    """The number whose last word is words[at]: digits, a number word, or tens + unit ("twenty one")."""
    word = words[at]
    if word.isdigit():
        return int(word)
    value = _NUMBER_WORDS.get(word)
    if value is not None and 0 < value < 10 and at > 0 and words[at - 1] in _TENS:
        return _TENS[words[at - 1]] + value
    return value


def reference_counts(vocabulary: ObjectVocabulary, references: list[str]) -> dict[str, float]:
    """Class -> the ground-truth count: the median of the exact counts the references give for it.
    Uncertain counts are left out; a class no reference counts exactly is absent."""
    exact: dict[str, list[int]] = {}
    for reference in references:
        for cls, count in vocabulary.counts(reference).items():
            if count is not None:
                exact.setdefault(cls, []).append(count)
    return {cls: float(statistics.median(values)) for cls, values in exact.items()}
