"""Deterministic synthetic bi-temporal scenes with known changes: the embedded default dataset.

Each pair is a top-down scene (textured land, roads, vegetation, ponds, buildings with shadows)
drawn twice, "before" (A) and "after" (B). Between the dates some buildings are built or
demolished, a road is added or vegetation is cleared; about a quarter of the pairs have no change
(only the illumination and sensor noise differ). Each pair gets a 0/255 change mask, 3-5 reference
captions in LEVIR-CC style, and QA (yes/no, counting, DeltaVLM 3x3 grid). As in LEVIR-CD, the
mask marks the changed objects (building footprints, the new road, the cleared vegetation), not
the shadows that come and go with buildings.

The captions name counts and 3x3-grid locations, so a model that sees the change can beat a fixed
caption. Every random draw comes from numpy Generators seeded from `seed` (one per pair, seeded
with (`seed`, pair index)), so the same arguments give byte-identical files.

Layout written by `generate` (LEVIR-CD images + LEVIR-CC captions + ChangeChat conversations):

    out/{train,val,test}/{A,B,label}/<split>_000001.png   out/{train,val,test}/prompts.txt
    out/list/{train,val,test}.txt    out/captions.json    out/conversations.json    out/synth.json
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import Field
from tqdm import tqdm

from rsforge.core.atomic import atomic_dir
from rsforge.core.config import DatasetConfig
from rsforge.core.data.levir import read_levir_cc
from rsforge.core.data.schema import Sample
from rsforge.core.prompts import GRID_CELLS, prompt_for

SYNTH_VERSION = 1
SPLITS = ("train", "val", "test")
NO_CHANGE_FRACTION = 0.27
MIN_SIZE = 32  # below this, buildings shrink to a couple of pixels and stop looking like buildings

_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}

# Colours, RGB 0-255.
_LAND = ((160, 150, 112), (138, 146, 98), (170, 160, 128), (126, 136, 94))  # dry grass, meadow, sand, scrub
_SOIL = (152, 118, 84)
_WATER = (46, 80, 116)
_TREES = (44, 78, 40)
_ROAD = (124, 124, 120)
_MARKING = (206, 204, 192)
_ROOFS = ((198, 198, 202), (172, 86, 64), (112, 128, 160), (214, 204, 182), (140, 140, 138))


# ------------------------------------------------------------------------------------------ drawing
def _bounds(k: int, size: int) -> int:
    """Pixel where grid row/column `k` (0..3) starts; pixel p lies in cell 3 * p // size."""
    return (k * size + 2) // 3


def _cell_box(cell: int, size: int) -> tuple[int, int, int, int]:
    row, col = divmod(cell, 3)
    return _bounds(row, size), _bounds(row + 1, size), _bounds(col, size), _bounds(col + 1, size)


def _noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth value noise, (size, size), about unit amplitude, with `cells` features across."""
    grid = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    t = (np.arange(size, dtype=np.float32) + 0.5) * (cells / size)
    i = np.minimum(t.astype(np.int64), cells - 1)
    f = t - i
    f = f * f * (3 - 2 * f)  # smoothstep: hides the grid's creases
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def _texture(
    rng: np.random.Generator,
    size: int,
    colour: tuple[int, int, int],
    low: float,
    mid: float,
    fine: float,
    mid_cells: int = 12,
) -> np.ndarray:
    """A material: a jittered base colour with large patches, mid-scale grain and pixel noise.
    Feature counts are per image, not per pixel, so a 256 px scene looks like an upscaled 64 px one
    with finer detail rather than a tiled one."""
    base = np.asarray(colour, np.float32) + rng.normal(0, 5, 3).astype(np.float32)
    lum = low * _noise(rng, size, 3) + mid * _noise(rng, size, mid_cells)
    lum += fine * rng.standard_normal((size, size), dtype=np.float32)
    return base + lum[..., None]


@dataclass
class _Road:
    vertical: bool
    lo: int  # first pixel row (horizontal) or column (vertical) of the strip
    hi: int
    band: int  # grid row (horizontal) or column (vertical) it runs along

    def mask(self, size: int, margin: int = 0) -> np.ndarray:
        m = np.zeros((size, size), bool)
        lo, hi = max(0, self.lo - margin), self.hi + margin
        if self.vertical:
            m[:, lo:hi] = True
        else:
            m[lo:hi, :] = True
        return m

    def cells(self) -> list[int]:
        return (
            [r * 3 + self.band for r in range(3)] if self.vertical else [self.band * 3 + c for c in range(3)]
        )


@dataclass
class _Building:
    y0: int
    x0: int
    y1: int
    x1: int
    colour: tuple[float, float, float]
    cell: int

    def footprint(self, size: int) -> np.ndarray:
        m = np.zeros((size, size), bool)
        m[self.y0 : self.y1, self.x0 : self.x1] = True
        return m


@dataclass
class _Scene:
    roads: list[_Road] = field(default_factory=list)
    soil: list[np.ndarray] = field(default_factory=list)
    water: list[np.ndarray] = field(default_factory=list)
    trees: list[np.ndarray] = field(default_factory=list)
    buildings: list[_Building] = field(default_factory=list)

    def copy(self) -> _Scene:
        return _Scene(
            list(self.roads), list(self.soil), list(self.water), list(self.trees), list(self.buildings)
        )


class _Canvas:
    """Draws scenes of one pair: the materials are shared by both dates, so unchanged ground is
    the same in A and B up to illumination and sensor noise."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.size = size
        self.shadow = max(1, round(size / 32))  # sun in the top left: shadows fall bottom-right
        self.road_width = max(2, round(size * 0.06))
        land = _LAND[int(rng.integers(len(_LAND)))]
        self.land = _texture(rng, size, land, low=12, mid=5, fine=3)
        self.soil = _texture(rng, size, _SOIL, low=6, mid=6, fine=5)
        self.water = _texture(rng, size, _WATER, low=5, mid=2, fine=1.5)
        self.trees = _texture(rng, size, _TREES, low=6, mid=16, fine=5, mid_cells=24)  # crowns
        self.road = _texture(rng, size, _ROAD, low=4, mid=2, fine=3)
        self.roof = 4 * rng.standard_normal((size, size), dtype=np.float32)
        self.yy, self.xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # pixel centres

    def blob(self, rng: np.random.Generator, cy: float, cx: float, radius: float, lobes: int) -> np.ndarray:
        """An irregular patch: a union of ellipses around (cy, cx) with a noisy outline."""
        fld = np.full((self.size, self.size), -np.inf, np.float32)
        for _ in range(lobes):
            oy, ox = rng.normal(0, radius * 0.35, 2)
            ry, rx = radius * rng.uniform(0.5, 0.85, 2)
            fld = np.maximum(fld, 1 - ((self.yy - cy - oy) / ry) ** 2 - ((self.xx - cx - ox) / rx) ** 2)
        return fld + 0.3 * _noise(rng, self.size, 10) > 0

    def render(self, scene: _Scene, rng: np.random.Generator) -> np.ndarray:
        img = self.land.copy()
        for material, masks in (
            (self.soil, scene.soil),
            (self.water, scene.water),
            (self.trees, scene.trees),
        ):
            for m in masks:
                img[m] = material[m]
        for road in scene.roads:
            m = road.mask(self.size)
            img[m] = self.road[m]
            if self.road_width >= 8:  # lane markings only where a road is wide enough to show them
                img[self._marking(road)] = _MARKING
        d = self.shadow
        shadow = np.zeros((self.size, self.size), bool)
        roofs = np.zeros((self.size, self.size), bool)
        for b in scene.buildings:
            shadow[b.y0 + d : b.y1 + d, b.x0 + d : b.x1 + d] = True
            roofs[b.y0 : b.y1, b.x0 : b.x1] = True
        img[shadow & ~roofs] *= 0.5
        for b in scene.buildings:
            roof = np.asarray(b.colour, np.float32) + self.roof[b.y0 : b.y1, b.x0 : b.x1, None]
            # a gable roof: the ridge runs along the long side, the half away from the sun is darker
            if b.x1 - b.x0 >= b.y1 - b.y0:
                roof[(b.y1 - b.y0) // 2 :] *= 0.84
            else:
                roof[:, (b.x1 - b.x0) // 2 :] *= 0.84
            img[b.y0 : b.y1, b.x0 : b.x1] = roof
        # the two dates differ in illumination and sensor noise even where nothing changed
        gain = 1 + rng.normal(0, 0.04) + rng.normal(0, 0.02, 3)
        img = img * gain.astype(np.float32) + rng.normal(0, 3, 3).astype(np.float32)
        img += rng.normal(0, 1.5, img.shape).astype(np.float32)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)

    def _marking(self, road: _Road) -> np.ndarray:
        centre = (road.lo + road.hi) // 2
        half = self.road_width // 16  # a 1 px line, 3 px on roads of 16 px and more
        along = self.yy if road.vertical else self.xx
        across = self.xx if road.vertical else self.yy
        dash = (along // self.road_width).astype(np.int64) % 2 == 0
        return dash & (np.abs(across - 0.5 - centre) <= half)


# ------------------------------------------------------------------------------------------ scenes
@dataclass
class _Event:
    kind: str  # "built" | "demolished" | "road" | "trees"
    count: int
    cells: list[int]
    road: _Road | None = None


@dataclass
class _Pair:
    before: np.ndarray
    after: np.ndarray
    mask: np.ndarray
    events: list[_Event]
    captions: list[str]
    qa: list[tuple[str, str, str]]  # (task, question, answer)


def _place_road(rng: np.random.Generator, canvas: _Canvas, vertical: bool, band: int) -> _Road:
    lo_b, hi_b = _bounds(band, canvas.size), _bounds(band + 1, canvas.size)
    # centre in the middle 40% of its band so the caption's location word is unambiguous
    centre = rng.uniform(lo_b + 0.3 * (hi_b - lo_b), lo_b + 0.7 * (hi_b - lo_b))
    lo = round(centre - canvas.road_width / 2)
    return _Road(vertical, lo, lo + canvas.road_width, band)


def _place_building(rng: np.random.Generator, canvas: _Canvas, free: np.ndarray) -> _Building | None:
    """A building inside one grid cell (footprint and shadow), on free ground, or None."""
    size, d = canvas.size, canvas.shadow
    lo, hi = max(3, round(0.07 * size)), max(4, round(0.16 * size))
    for _ in range(30):
        cell = int(rng.integers(9))
        h, w = (int(v) for v in rng.integers(lo, hi + 1, 2))
        y0b, y1b, x0b, x1b = _cell_box(cell, size)
        if y1b - y0b - h - d < 2 or x1b - x0b - w - d < 2:
            continue
        y0, x0 = int(rng.integers(y0b + 1, y1b - h - d)), int(rng.integers(x0b + 1, x1b - w - d))
        if free[y0 - 1 : y0 + h + d + 1, x0 - 1 : x0 + w + d + 1].all():
            colour = np.asarray(_ROOFS[int(rng.integers(len(_ROOFS)))]) + rng.normal(0, 6, 3)
            b = _Building(y0, x0, y0 + h, x0 + w, tuple(float(c) for c in colour), cell)
            free[y0 - 1 : y0 + h + d + 1, x0 - 1 : x0 + w + d + 1] = False
            return b
    return None


def _place_patch(
    rng: np.random.Generator,
    canvas: _Canvas,
    free: np.ndarray,
    scale: tuple[float, float],
    lobes: int,
    keep_out: np.ndarray,
) -> tuple[np.ndarray, int] | None:
    """An irregular patch centred in a random grid cell, clipped to free ground (vegetation along
    a road), away from `keep_out` altogether. Marks it used."""
    size = canvas.size
    for _ in range(10):
        cell = int(rng.integers(9))
        y0, y1, x0, x1 = _cell_box(cell, size)
        cy = (y0 + y1) / 2 + rng.uniform(-0.15, 0.15) * (y1 - y0)
        cx = (x0 + x1) / 2 + rng.uniform(-0.15, 0.15) * (x1 - x0)
        blob = canvas.blob(rng, cy, cx, rng.uniform(*scale) * (y1 - y0), lobes)
        if (blob & keep_out).any():
            continue
        blob &= free
        if blob.sum() >= 0.12 * (y1 - y0) * (x1 - x0):
            free &= ~blob
            return blob, cell
    return None


def _make_pair(rng: np.random.Generator, size: int, changed: bool) -> _Pair:
    """Plan the changes, lay out scene A around them, derive scene B, draw both and describe them."""
    canvas = _Canvas(rng, size)
    kinds: set[str] = set()
    if changed:
        n_kinds = 1 if rng.random() < 0.7 else 2
        options = ["built", "demolished", "road", "trees"]
        kinds = {str(k) for k in rng.choice(options, n_kinds, replace=False, p=[0.4, 0.2, 0.2, 0.2])}
    scene, free = _Scene(), np.ones((size, size), bool)

    # Space for what appears in B is reserved first so it is plain land in A; vegetation keeps clear
    # of it entirely, as a corridor cut through trees in A would give the change away.
    reserved = np.zeros((size, size), bool)
    new_road = None
    if "road" in kinds:
        new_road = _place_road(rng, canvas, bool(rng.integers(2)), int(rng.integers(3)))
        reserved |= new_road.mask(size, margin=1)
        free &= ~reserved
    n_roads = int(rng.choice(3, p=[0.3, 0.45, 0.25]))
    for vertical in [bool(rng.integers(2))] if n_roads == 1 else [False, True][:n_roads]:
        band = int(rng.integers(3))
        if new_road is not None and new_road.vertical == vertical and new_road.band == band:
            band = (band + 1 + int(rng.integers(2))) % 3
        road = _place_road(rng, canvas, vertical, band)
        scene.roads.append(road)
        free &= ~road.mask(size, margin=1)
    built: list[_Building] = []
    if "built" in kinds:
        for _ in range(int(rng.choice([1, 2, 3, 4], p=[0.4, 0.3, 0.2, 0.1]))):
            was_free = free.copy()
            if (b := _place_building(rng, canvas, free)) is not None:
                built.append(b)
                reserved |= was_free & ~free
    cleared: list[tuple[np.ndarray, int]] = []
    if "trees" in kinds:
        for _ in range(1 if rng.random() < 0.7 else 2):
            if (patch := _place_patch(rng, canvas, free, (0.3, 0.45), 4, reserved)) is not None:
                cleared.append(patch)
    scene.trees = [m for m, _ in cleared]
    for _ in range(int(rng.integers(0, 3))):
        if (patch := _place_patch(rng, canvas, free, (0.3, 0.45), 4, reserved)) is not None:
            scene.trees.append(patch[0])
    if rng.random() < 0.35 and (pond := _place_patch(rng, canvas, free, (0.25, 0.35), 2, ~free)):
        scene.water.append(pond[0])
    if rng.random() < 0.25 and (patch := _place_patch(rng, canvas, free, (0.2, 0.3), 3, ~free)):
        scene.soil.append(patch[0])
    for _ in range(int(rng.integers(2, 8))):
        if (b := _place_building(rng, canvas, free)) is not None:
            scene.buildings.append(b)

    gone: list[_Building] = []
    if "demolished" in kinds and scene.buildings:
        k = min(len(scene.buildings), int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2])))
        gone = [scene.buildings[i] for i in sorted(rng.choice(len(scene.buildings), k, replace=False))]
    # every planned change failed to fit (rare in a crowded scene): build a house instead
    no_change = not (built or gone or new_road or cleared)
    if changed and no_change and (b := _place_building(rng, canvas, free)) is not None:
        built.append(b)

    after, events = scene.copy(), []
    change = np.zeros((size, size), bool)
    if built:
        after.buildings += built
        for b in built:
            change |= b.footprint(size)
        events.append(_Event("built", len(built), sorted({b.cell for b in built})))
    if gone:
        after.buildings = [b for b in after.buildings if all(b is not g for g in gone)]
        for b in gone:
            after.soil.append(b.footprint(size))  # rubble: bare soil where the building stood
            change |= b.footprint(size)
        events.append(_Event("demolished", len(gone), sorted({b.cell for b in gone})))
    if new_road is not None:
        after.roads.append(new_road)
        fresh = new_road.mask(size)
        for road in scene.roads:
            fresh &= ~road.mask(size)  # a crossing with an old road is not a change
        change |= fresh
        events.append(_Event("road", 1, new_road.cells(), new_road))
    if cleared:
        after.trees = after.trees[len(cleared) :]
        for m, _ in cleared:
            after.soil.append(m)
            change |= m
        events.append(_Event("trees", len(cleared), sorted({c for _, c in cleared})))

    return _Pair(
        before=canvas.render(scene, rng),
        after=canvas.render(after, rng),
        mask=change.astype(np.uint8) * 255,
        events=events,
        captions=_captions(rng, events),
        qa=_qa(events),
    )


# ---------------------------------------------------------------------------------------- language
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


def _phrase(rng: np.random.Generator, event: _Event) -> str:
    template = _pick(rng, _TEMPLATES[event.kind, min(event.count, 2)])
    if event.road is not None:
        road = event.road
        return template.format(
            w=_pick(rng, _ROAD_PHRASES[road.vertical, road.band]),
            o="vertical" if road.vertical else "horizontal",
            d="top to bottom" if road.vertical else "left to right",
        )
    return template.format(n=_NUMBER_WORDS[event.count], w=_where(rng, event.cells))


def _captions(rng: np.random.Generator, events: list[_Event]) -> list[str]:
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


def _grid_answer(events: list[_Event]) -> str:
    groups = {"buildings": set(), "roads": set(), "vegetation": set()}
    category = {"built": "buildings", "demolished": "buildings", "road": "roads", "trees": "vegetation"}
    for e in events:
        groups[category[e.kind]].update(e.cells)
    parts = [f"{name} {[GRID_CELLS[c] for c in sorted(cells)]}" for name, cells in groups.items() if cells]
    return "; ".join(parts) or "no change"


def _qa(events: list[_Event]) -> list[tuple[str, str, str]]:
    built = sum(e.count for e in events if e.kind == "built")
    return [
        ("binary_change", prompt_for("binary_change"), "yes" if events else "no"),
        ("counting", prompt_for("counting"), str(built)),
        ("grid_localization", prompt_for("grid_localization"), _grid_answer(events)),
    ]


# ------------------------------------------------------------------------------------------ output
def _split_sizes(n: int, val_frac: float, test_frac: float) -> dict[str, int]:
    n_val, n_test = round(n * val_frac), round(n * test_frac)
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


def synth_params(n: int, seed: int, size: int = 64, val_frac: float = 0.15, test_frac: float = 0.15) -> dict:
    """What `synth.json` records; a cached folder is reused only when this matches exactly."""
    return {"generator": "rsforge.synth", "version": SYNTH_VERSION, "n": n, "seed": seed, "size": size,
            "val_frac": val_frac, "test_frac": test_frac}  # fmt: skip


def _check_replaceable(out: Path) -> None:
    """Refuse to replace anything but an earlier synthetic dataset (or an empty folder)."""
    if out.is_dir() and ((out / "synth.json").is_file() or not any(out.iterdir())):
        return
    if out.exists():
        raise FileExistsError(
            f"{out} exists and is not a synthetic dataset (no synth.json); not replacing it"
        )


def _save_png(array: np.ndarray, path: Path) -> None:
    # noisy scenes hardly compress: the fastest zlib level costs ~10% in size and halves the time
    Image.fromarray(array).save(path, format="PNG", compress_level=1)


def _conversation(qa: list[tuple[str, str]]) -> list[dict[str, str]]:
    turns = []
    for i, (question, answer) in enumerate(qa):
        turns.append({"from": "human", "value": ("<image>\n" if i == 0 else "") + question})
        turns.append({"from": "gpt", "value": answer})
    return turns


def generate(
    out_dir: str | Path,
    n: int,
    seed: int,
    size: int = 64,
    val_frac: float = 0.15,
    test_frac: float = 0.15,
    progress: bool = True,
) -> Path:
    """Write `n` synthetic pairs to `out_dir` (layout in the module docstring) and return its path.

    The dataset is built in a temporary folder beside `out_dir` and moved into place at the end, so
    an interrupted run never leaves a half-written dataset. An existing `out_dir` is replaced only
    if it is an earlier synthetic dataset (has `synth.json`) or empty.
    """
    if n < 1 or seed < 0 or size < MIN_SIZE:
        raise ValueError(
            f"synth: need n >= 1, seed >= 0 and size >= {MIN_SIZE}; got n={n}, seed={seed}, size={size}"
        )
    if not (val_frac >= 0 and test_frac >= 0 and val_frac + test_frac < 1):
        raise ValueError(
            f"synth: val_frac and test_frac must be >= 0 with a sum < 1; got {val_frac}, {test_frac}"
        )
    out = Path(out_dir)
    _check_replaceable(out)
    with atomic_dir(out) as tmp:
        _write(tmp, n, seed, size, val_frac, test_frac, f"synth {out.name}" if progress else None)
    return out


def _write(
    out: Path, n: int, seed: int, size: int, val_frac: float, test_frac: float, desc: str | None
) -> None:
    """Write the dataset into the new, empty folder `out`; `desc`: progress bar title, None for none."""
    sizes = _split_sizes(n, val_frac, test_frac)
    rng = np.random.default_rng(seed)
    (out / "list").mkdir()
    images: list[dict[str, Any]] = []
    conversations: list[dict[str, Any]] = []
    imgid = sentid = 0
    with tqdm(total=n, desc=desc, unit="pair", disable=desc is None) as bar:
        for split in SPLITS:
            count = sizes[split]
            for sub in ("A", "B", "label"):
                (out / split / sub).mkdir(parents=True)
            # the no-change share is exact per split (not left to chance), so tiny splits have both kinds
            changed = np.ones(count, bool)
            changed[rng.permutation(count)[: round(count * NO_CHANGE_FRACTION)]] = False
            names, prompt_lines = [], []
            for i in range(count):
                name = f"{split}_{i + 1:06d}.png"
                pair = _make_pair(np.random.default_rng([seed, imgid]), size, bool(changed[i]))
                _save_png(pair.before, out / split / "A" / name)
                _save_png(pair.after, out / split / "B" / name)
                _save_png(pair.mask, out / split / "label" / name)
                sentids = list(range(sentid, sentid + len(pair.captions)))
                images.append({
                    "filepath": split, "filename": name, "split": split, "imgid": imgid, "sentids": sentids,
                    "sentences": [
                        {"raw": " " + c, "tokens": c.split(), "imgid": imgid, "sentid": s}
                        for s, c in zip(sentids, pair.captions, strict=True)
                    ],
                    "changeflag": int(bool(pair.events)),
                })  # fmt: skip
                conversations += _pair_conversations(split, name, pair)
                names.append(name)
                prompt_lines.append(f"{name}  {pair.captions[0]}\n")  # SegChange-R1: name, two spaces, text
                imgid += 1
                sentid += len(pair.captions)
                bar.update()
            (out / "list" / f"{split}.txt").write_text("".join(f"{nm}\n" for nm in names))
            (out / split / "prompts.txt").write_text("".join(prompt_lines))
    (out / "captions.json").write_text(json.dumps({"images": images, "dataset": "rsforge-synth"}))
    (out / "conversations.json").write_text(json.dumps(conversations))
    params = synth_params(n, seed, size, val_frac, test_frac)
    (out / "synth.json").write_text(json.dumps({**params, "splits": sizes}, indent=2) + "\n")


def _pair_conversations(split: str, name: str, pair: _Pair) -> list[dict[str, Any]]:
    """ChangeChat style: one entry per task, plus a multi-turn dialogue going from coarse to fine."""
    stem, image = name.removesuffix(".png"), [f"{split}/A/{name}", f"{split}/B/{name}"]
    caption = ("change_captioning", prompt_for("change_captioning"), pair.captions[0])
    entries = [
        {"id": f"{stem}_{task}", "image": image, "task": task, "conversations": _conversation([(q, a)])}
        for task, q, a in (caption, *pair.qa)
    ]
    dialogue = [(q, a) for _, q, a in (*pair.qa, caption)]
    entries.append({"id": f"{stem}_multi_turn", "image": image, "task": "multi_turn",
                    "conversations": _conversation(dialogue)})  # fmt: skip
    return entries


# ------------------------------------------------------------------------------ dataset registry
class SynthDatasetConfig(DatasetConfig):
    """The synthetic dataset, generated on first use into `root` (default
    `data/synth-n{n}-s{seed}-{size}px` under the working directory) and reused while it matches."""

    name: str = "synth"
    n: int = Field(600, ge=1)
    seed: int = Field(0, ge=0)
    size: int = Field(64, ge=MIN_SIZE)
    root: str | None = None


def _cached(root: Path, params: dict) -> bool:
    try:
        found = json.loads((root / "synth.json").read_text())
    except (OSError, ValueError):
        return False
    return {k: found.get(k) for k in params} == params


def load_synth(config: SynthDatasetConfig, split: str) -> list[Sample]:
    """Samples of `split`; training gets one sample per reference caption."""
    root = Path(config.root or f"data/synth-n{config.n}-s{config.seed}-{config.size}px")
    if not _cached(root, synth_params(config.n, config.seed, config.size)):
        generate(root, config.n, config.seed, config.size)
    return read_levir_cc(root, split, per_reference=split == "train")
