"""The words of the synthetic data: captions in LEVIR-CC style and the QA of each pair."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rsforge.datasets.prompts import GRID_CELLS, prompt_for
from rsforge.datasets.synth.drawing import _Road

_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}


# ---------------------------------------------------------------------------------------- language
@dataclass
class ChangeEvent:
    kind: str  # "built" | "demolished" | "road" | "trees"
    count: int
    cells: list[int]
    road: _Road | None = None


_CELL_PHRASES = (
    ("in the top left", "at the top left corner", "in the upper left"),
    ("at the top", "in the upper part"),
    ("in the top right", "at the top right corner", "in the upper right"),
    ("on the left", "on the left side"),
    ("in the center", "in the middle"),
    ("on the right", "on the right side"),
    ("in the bottom left", "at the bottom left corner", "in the lower left"),
    ("at the bottom", "in the lower part"),
    ("in the bottom right", "at the bottom right corner", "in the lower right"),
)
_SPREAD = ("in several places", "across the scene", "in different parts of the scene")
_ROAD_PHRASES = {  # (vertical, band)
    (False, 0): ("at the top", "along the top", "in the upper part"),
    (False, 1): ("through the middle", "through the center", "across the middle"),
    (False, 2): ("at the bottom", "along the bottom", "in the lower part"),
    (True, 0): ("on the left", "along the left side"),
    (True, 1): ("through the middle", "through the center", "down the middle"),
    (True, 2): ("on the right", "along the right side"),
}
_TEMPLATES = {
    ("built", 1): (
        "a new building was built {w}",
        "a house has been constructed {w}",
        "one building appears {w}",
        "there is a new house {w}",
        "a building was added {w}",
    ),
    ("built", 2): (
        "{n} new buildings were built {w}",
        "{n} houses have been constructed {w}",
        "{n} buildings appear {w}",
        "there are {n} new houses {w}",
        "{n} buildings were added {w}",
        "some buildings were built {w}",
    ),
    ("demolished", 1): (
        "a building was demolished {w}",
        "the house {w} has been torn down",
        "one building {w} was removed",
        "a building {w} has disappeared",
        "the building {w} was replaced by bare land",
    ),
    ("demolished", 2): (
        "{n} buildings were demolished {w}",
        "{n} houses {w} have been torn down",
        "{n} buildings {w} were removed",
        "the {n} buildings {w} have disappeared",
        "{n} buildings {w} were replaced by bare land",
    ),
    ("road", 1): (
        "a road has been added {w}",
        "a new road was built {w}",
        "a {o} road appears {w}",
        "a road now runs from {d} {w}",
        "a road has been added across the scene",
    ),
    ("trees", 1): (
        "some trees were cut down {w}",
        "the trees {w} have been removed",
        "the vegetation {w} was cleared",
        "the woods {w} were cut down",
        "a green area {w} has become bare land",
    ),
    ("trees", 2): (
        "some trees were cut down {w}",
        "the trees {w} have been removed",
        "the vegetation {w} was cleared",
        "the woods {w} were cut down",
        "green areas {w} have become bare land",
    ),
}
_NO_CHANGE = (
    "there is no change",
    "the two scenes seem identical",
    "nothing has changed in the area",
    "the scene is the same as before",
    "no change has occurred",
    "there is no difference between the two images",
    "the two images look the same",
    "everything remains the same",
)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _where(rng: np.random.Generator, cells: list[int]) -> str:
    if len(cells) > 2:
        return _pick(rng, _SPREAD)
    return " and ".join(_pick(rng, _CELL_PHRASES[c]) for c in cells)


def _phrase(rng: np.random.Generator, event: ChangeEvent) -> str:
    template = _pick(rng, _TEMPLATES[event.kind, min(event.count, 2)])
    if event.road is not None:
        road = event.road
        return template.format(
            w=_pick(rng, _ROAD_PHRASES[road.vertical, road.band]),
            o="vertical" if road.vertical else "horizontal",
            d="top to bottom" if road.vertical else "left to right",
        )
    return template.format(n=_NUMBER_WORDS[event.count], w=_where(rng, event.cells))


def change_captions(rng: np.random.Generator, events: list[ChangeEvent]) -> list[str]:
    """3-5 differently worded references (lowercase, no punctuation, LEVIR-CC style)."""
    k = int(rng.integers(3, 6))
    if not events:
        return [_NO_CHANGE[int(i)] for i in rng.choice(len(_NO_CHANGE), k, replace=False)]
    captions: list[str] = []
    for _ in range(100):  # every event has >= 5 wordings, so this ends after a few rounds
        order = rng.permutation(len(events))
        caption = " and ".join(_phrase(rng, events[int(i)]) for i in order)
        if caption not in captions:
            captions.append(caption)
            if len(captions) == k:
                break
    return captions


def _grid_answer(events: list[ChangeEvent]) -> str:
    groups = {"buildings": set(), "roads": set(), "vegetation": set()}
    category = {"built": "buildings", "demolished": "buildings", "road": "roads", "trees": "vegetation"}
    for e in events:
        groups[category[e.kind]].update(e.cells)
    parts = [f"{name} {[GRID_CELLS[c] for c in sorted(cells)]}" for name, cells in groups.items() if cells]
    return "; ".join(parts) or "no change"


def question_answers(events: list[ChangeEvent]) -> list[tuple[str, str, str]]:
    built = sum(e.count for e in events if e.kind == "built")
    return [
        ("binary_change", prompt_for("binary_change"), "yes" if events else "no"),
        ("counting", prompt_for("counting"), str(built)),
        ("grid_localization", prompt_for("grid_localization"), _grid_answer(events)),
    ]
