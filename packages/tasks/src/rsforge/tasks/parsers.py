"""Parsers of model answers into structured values. Pure Python: no torch.

Every parser returns None for an answer it cannot read (a *malformed* answer): the metrics score it
as wrong and count it, nothing raises.

Coordinates are pixels of the first image, origin top-left, x right, y down (the convention of
`rsforge.core.sample`). Models that answer in Qwen-VL style 0-1000 normalised coordinates are
read only when asked, by passing `normalized=(width, height)` of the first image: the parsed values
are then converted to pixels.
"""

from __future__ import annotations

import re

from rsforge.datasets.prompts import GRID_CELLS
from rsforge.tasks.metrics.answers import Counts

Point = tuple[float, float]
Polygon = tuple[Point, ...]

NUMBER_WORDS = {
    "zero": 0, "no": 0, "none": 0, "a": 1, "an": 1, "one": 1, "single": 1, "two": 2, "three": 3, "four": 4,
    "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20,
}  # fmt: skip
_NUMBER = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*|\d+")


def normalize_text(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: how short answers are compared."""
    return " ".join(re.findall(r"[a-z0-9]+(?:[-'][a-z0-9]+)*", text.lower()))


# ------------------------------------------------------------------------------------------ yes/no
_YES, _NO = {"yes", "y", "true"}, {"no", "n", "false"}
# The no-change sentences of LEVIR-CC captions, which DeltaVLM reads as a "no" (scripts/test-cls.ipynb).
_NO_CHANGE_SENTENCES = {"there is no difference", "the two scenes seem identical", "the scene is the same as before",
                        "no change has occurred", "almost nothing has changed"}  # fmt: skip


def parse_yes_no(text: str) -> bool | None:
    """"yes" -> True, "no" -> False: the first word decides ("Yes, a road was built."); failing that,
    a single "yes" or "no" anywhere, or one of LEVIR-CC's no-change sentences ("the two scenes seem
    identical" -> False), as DeltaVLM scores a caption. Anything else (both, neither) is malformed."""
    words = normalize_text(text).split()
    if not words:
        return None
    if words[0] in _YES | _NO:
        return words[0] in _YES
    if " ".join(words) in _NO_CHANGE_SENTENCES:
        return False
    found = {w in _YES for w in words if w in {"yes", "no"}}
    return found.pop() if len(found) == 1 else None


# ---------------------------------------------------------------------------------------- counting
# Words between a number and the class it counts ("3 new buildings"), and words that end a phrase.
_ADJECTIVES = {"new", "more", "additional", "other", "small", "large", "big", "newly", "added", "extra"}
_NOT_CLASSES = {"of", "and", "or", "were", "was", "are", "is", "have", "has", "in", "at", "on", "the", "to",
                "from", "changes", "change", "times", "total", "than"}  # fmt: skip


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def _count_value(word: str) -> int | None:
    if word.isdigit():
        return int(word)
    return NUMBER_WORDS.get(word)


def _is_class(word: str | None) -> bool:
    return word is not None and word.isalpha() and word not in _NOT_CLASSES and _count_value(word) is None


def _skip_adjectives(words: list[str], j: int) -> int:
    while j < len(words) and words[j] in _ADJECTIVES:
        j += 1
    return j


def _more_classes(words: list[str], j: int) -> tuple[list[str], int]:
    """The classes joined on by "or"/"and" from `words[j]` ("... or buildings"): a "no" covers them all, as
    in DeltaVLM's "no new roads or buildings"; their singular names and the index after them."""
    names = []
    while j < len(words) and words[j] in {"or", "and", "nor"}:
        k = _skip_adjectives(words, j + 1)
        if k >= len(words) or not _is_class(words[k]):
            break
        names.append(_singular(words[k]))
        j = k + 1
    return names, j


def parse_counts(text: str) -> Counts | None:
    """Counts, per class where named: "3 new buildings and 1 new road" -> total 4, {building: 3,
    road: 1}; "2", "two" -> total 2 (no class); "no change" / "none" -> total 0. Class names are
    singular, lower case. "a"/"an" count as 1 only before a class name ("a new road"). A "no" covers
    every class it lists, DeltaVLM's zero answers: "no new roads or buildings", "there are no changes in
    roads or buildings", "No roads has changed, and no buildings has changed." -> {road: 0, building: 0}."""
    words = _WORD.findall(text.lower().replace("_", " "))
    per_class: dict[str, int] = {}
    unnamed: list[int] = []
    i = 0
    while i < len(words):
        value = _count_value(words[i])
        if value is None:
            i += 1
            continue
        j = _skip_adjectives(words, i + 1)
        noun = words[j] if j < len(words) else None
        if words[i] == "no" and noun in {"change", "changes"} and j + 1 < len(words) and words[j + 1] in {"in", "to"}:
            j = _skip_adjectives(words, j + 2)  # "no changes in roads": the classes follow
            noun = words[j] if j < len(words) and _is_class(words[j]) else noun
        if _is_class(noun):
            names, end = [_singular(noun)], j + 1
            if value == 0:
                more, end = _more_classes(words, end)
                names += more
            for name in names:
                per_class[name] = per_class.get(name, 0) + value
            i = end
        else:
            if words[i] not in {"a", "an", "no"}:  # an article or "no" without a class name is not a count
                unnamed.append(value)
            elif words[i] == "no" and noun in (None, "change", "changes"):
                unnamed.append(0)
            i += 1
    if per_class:
        return Counts(sum(per_class.values()), per_class)
    if len(unnamed) == 1:
        return Counts(unnamed[0])
    if words in (["none"], ["zero"]):
        return Counts(0)
    return None  # no number, or several numbers without classes: ambiguous


# ------------------------------------------------------------------------------------------- grid
# DeltaVLM names the 9 cells row-column ("top-center", "center-center": scripts/test-loc.ipynb); rsforge's
# `GRID_CELLS` drop the "center" of the middle row and column.
_DELTAVLM_CELLS = {"top": "top-center", "left": "center-left", "center": "center-center", "right": "center-right",
                   "bottom": "bottom-center"}  # fmt: skip
_CELL_ALIASES = {v: k for k, v in _DELTAVLM_CELLS.items()} | {
    "centre": "center", "middle": "center", "middle-center": "center", "middle-middle": "center",
    "middle-left": "left", "middle-right": "right", "top-middle": "top", "bottom-middle": "bottom",
    "upper-left": "top-left", "upper-right": "top-right", "lower-left": "bottom-left", "lower-right": "bottom-right",
}  # fmt: skip
_GROUP = re.compile(r"([a-z][a-z _-]*?)\s*:?\s*\[([^\[\]]*)\]")
_BETWEEN_GROUPS = re.compile(r"[\s;]*")
_NO_CHANGE = {"no change", "no changes", "none", "nothing", "nothing changed", "no change detected"}


def _cell(item: str) -> str | None:
    name = re.sub(r"[\s_]+", "-", item.strip().strip("'\"").strip().lower())
    name = _CELL_ALIASES.get(name, name)
    return name if name in GRID_CELLS else None


def parse_grid(text: str) -> dict[str, frozenset[str]] | None:
    """A 3x3-grid answer -> {category: cells}, cells named as in `GRID_CELLS`. Reads DeltaVLM's answers,
    every category it asks about followed by its cells, none for no change: "roads ['top-center']
    buildings ['center-center']", "roads [] buildings []"; the synthetic generator's "; "-joined groups
    ("buildings ['top-left', 'center']; roads ['left']"); and "no change" -> {}. A few spellings like
    "top left", "centre" are accepted; an unknown cell, a group without brackets or other words between
    the groups is malformed."""
    clean = text.strip().rstrip(".").strip().lower()
    if normalize_text(clean) in _NO_CHANGE:
        return {}
    groups: dict[str, set[str]] = {}
    end = 0
    for match in _GROUP.finditer(clean):
        if not _BETWEEN_GROUPS.fullmatch(clean, end, match.start()):
            return None
        end = match.end()
        category = " ".join(match.group(1).replace("_", " ").split())
        cells = set()
        for item in match.group(2).split(","):
            if not item.strip():
                continue
            cell = _cell(item)
            if cell is None:
                return None
            cells.add(cell)
        groups.setdefault(category, set()).update(cells)
    if not groups or not _BETWEEN_GROUPS.fullmatch(clean, end):
        return None
    return {name: frozenset(cells) for name, cells in groups.items()}


def format_grid(groups: dict[str, frozenset[str] | set[str]], *, style: str = "synth") -> str:
    """The inverse of `parse_grid`, cells in grid order. `style="synth"` (the synthetic generator's):
    changed categories joined by "; ", "no change" when none; `style="deltavlm"`, for data in DeltaVLM's
    format: every category given, in the order given, also those without changes ("roads [] buildings
    ['center-center']"), so pass all the categories the question asks about."""
    if style == "deltavlm":
        if not groups:
            raise ValueError("format_grid(style='deltavlm'): DeltaVLM names every category it asks about; "
                             "give them (with empty cell sets where nothing changed)")
        return " ".join(f"{name} {[_DELTAVLM_CELLS.get(c, c) for c in GRID_CELLS if c in cells]}"
                        for name, cells in groups.items())  # fmt: skip
    if style != "synth":
        raise ValueError(f"format_grid: unknown style {style!r}; known styles: synth, deltavlm")
    parts = [f"{name} {[c for c in GRID_CELLS if c in cells]}" for name, cells in groups.items() if cells]
    return "; ".join(parts) or "no change"


# ------------------------------------------------------------------------------------------ boxes
_BRACKETED = re.compile(r"[\[(]([^\[\]()]*)[\])]")


def _numbers(text: str) -> list[float]:
    return [float(v) for v in re.findall(_NUMBER, text)]


def _scale(values: list[float], normalized: tuple[float, float] | None) -> list[float]:
    if normalized is None:
        return values
    width, height = normalized
    return [v * (width if k % 2 == 0 else height) / 1000 for k, v in enumerate(values)]


def _groups_of_numbers(text: str) -> list[list[float]]:
    """The numbers of each innermost bracket group, "[1, 2]" or "(1, 2)"; the whole text if none."""
    groups = [_numbers(g) for g in _BRACKETED.findall(text)]
    groups = [g for g in groups if g]
    if groups:
        return groups
    values = _numbers(text)
    return [values] if values else []


def _points_to_flat(groups: list[list[float]], size: int) -> list[list[float]] | None:
    """Flat coordinate lists of `size` numbers from groups that are either whole shapes or (x, y)
    points (Qwen-VL "(x1,y1),(x2,y2)"); None when they do not add up."""
    shapes: list[list[float]] = []
    pending: list[float] = []
    for g in groups:
        if len(g) == size and not pending:
            shapes.append(g)
        elif len(g) == 2:
            pending += g
            if len(pending) == size:
                shapes.append(pending)
                pending = []
        elif len(g) % size == 0 and not pending:
            shapes += [g[k : k + size] for k in range(0, len(g), size)]
        else:
            return None
    return None if pending else shapes


def parse_box(text: str, *, normalized: tuple[float, float] | None = None) -> tuple[float, ...] | None:
    """The first box `[x1, y1, x2, y2]` (also "(x1, y1), (x2, y2)"), corners ordered so that
    x1 <= x2 and y1 <= y2; None when there is no 4-number box."""
    shapes = _points_to_flat(_groups_of_numbers(text), 4)
    if not shapes:
        return None
    x1, y1, x2, y2 = _scale(shapes[0], normalized)
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def parse_polygons(text: str, *, normalized: tuple[float, float] | None = None) -> list[Polygon] | None:
    """Oriented boxes as 8-number polygons: "[x1, y1, ..., x4, y4]" (several allowed, also nested
    "[[...], [...]]" or as (x, y) points); [] for "none" / "no objects"; None when the numbers do not
    make whole 4-point polygons."""
    groups = _groups_of_numbers(text)
    if not groups:
        return [] if normalize_text(text) in {"none", "no objects", "no object", "nothing", "no"} else None
    shapes = _points_to_flat(groups, 8)
    if not shapes:
        return None
    polygons = []
    for flat in shapes:
        values = _scale(flat, normalized)
        polygons.append(tuple((values[k], values[k + 1]) for k in range(0, 8, 2)))
    return polygons


# ------------------------------------------------------------------------------- choices and QA
def parse_choice(text: str, candidates: list[str]) -> str | None:
    """The candidate the answer names: an exact match (after `normalize_text`), else the one candidate
    whose words appear in the answer (the longest when one contains another, "dense residential" over
    "residential"); None when none or several unrelated ones appear."""
    answer = normalize_text(text)
    by_norm = {normalize_text(c): c for c in candidates}
    if answer in by_norm:
        return by_norm[answer]
    padded = f" {answer} "
    found = [n for n in by_norm if n and f" {n} " in padded]
    found = [n for n in found if not any(n != m and f" {n} " in f" {m} " for m in found)]
    return by_norm[found[0]] if len(found) == 1 else None


def normalize_answer(text: str) -> str:
    """A short answer for exact-match scoring (VQA): normalised text without articles, number words
    as digits, and "yes"/"no" alone when the answer starts with one."""
    words = [w for w in normalize_text(text).split() if w not in {"a", "an", "the"}]
    if words and words[0] in {"yes", "no"}:
        return words[0]
    return " ".join(str(NUMBER_WORDS[w]) if w in NUMBER_WORDS and w not in {"no", "none"} else w for w in words)
