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

Besides the pairs, every index gets two single-image scenes, each from its own seeded generator:
a land-cover scene whose class (residential, forest, water, farmland, bareland, meadow, in turn)
decides its content, for scene classification and captioning; and an objects scene (buildings,
some of them rotated, roads, trees, ponds) for grounding (a described building's box), oriented
boxes (every building's 4-corner polygon) and RSVQA-style questions (presence, count, comparison).

Layout written by `generate`, each part in a public format its reader reads:

    out/{train,val,test}/{A,B,label}/<split>_000001.png   out/{train,val,test}/prompts.txt  (LEVIR-CD)
    out/list/{train,val,test}.txt    out/captions.json (LEVIR-CC)    out/conversations.json (ChangeChat)
    out/scenes/<class>/<split>_000001.png   out/scenes/list/<split>.txt   (class folders)
    out/scenes/captions.json                                             (COCO captions, `split` field)
    out/objects/images/<id>.png   out/objects/{train,val,test}.txt       (shared by the three below)
    out/objects/labelTxt/<id>.txt (DOTA)   out/objects/Annotations/<id>.xml (RSVG)
    out/objects/synth_split_<split>_{questions,answers,images}.json      (RSVQA)
    out/synth.json
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image
from pydantic import Field
from tqdm import tqdm

from rsforge.core.atomic import atomic_dir
from rsforge.core.config import DatasetConfig
from rsforge.core.data.common import number
from rsforge.core.data.levir import read_levir_cc
from rsforge.core.data.schema import Sample
from rsforge.core.prompts import GRID_CELLS, prompt_for

SYNTH_VERSION = 2
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
_ROOF_NAMES = ("white", "red", "blue", "beige", "grey")
_CROPS = ((96, 140, 62), (190, 176, 96), (122, 150, 70), (168, 132, 86))  # green, ripe, young, ploughed
LAND_COVER = ("residential", "forest", "water", "farmland", "bareland", "meadow")
# generator streams of the single-image scenes: seeded (seed, index, tag), apart from the pairs' (seed, index)
_LAND_TAG, _OBJECTS_TAG = 1, 2


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
class _Rotated:
    """A building turned by `angle` (radians) about its centre; `corners` clockwise on screen."""

    cy: float
    cx: float
    half_len: float
    half_wid: float
    angle: float
    colour: tuple[float, float, float]
    cell: int

    def local(self, yy: np.ndarray, xx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel centres in the building's frame: along its length, across it."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        return (xx - self.cx) * c + (yy - self.cy) * s, -(xx - self.cx) * s + (yy - self.cy) * c

    def mask(self, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        u, v = self.local(yy, xx)
        return (np.abs(u) <= self.half_len) & (np.abs(v) <= self.half_wid)

    def corners(self) -> list[float]:
        c, s = np.cos(self.angle), np.sin(self.angle)
        out = []
        for u, v in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            du, dv = u * self.half_len, v * self.half_wid
            out += [round(float(self.cx + du * c - dv * s), 1), round(float(self.cy + du * s + dv * c), 1)]
        return out


@dataclass
class _Field:
    """A crop field: its area, the rows ploughed across it, the crop colour."""

    mask: np.ndarray
    rows: np.ndarray
    colour: tuple[int, int, int]


@dataclass
class _Scene:
    roads: list[_Road] = field(default_factory=list)
    soil: list[np.ndarray] = field(default_factory=list)
    water: list[np.ndarray] = field(default_factory=list)
    trees: list[np.ndarray] = field(default_factory=list)
    buildings: list[_Building] = field(default_factory=list)
    rotated: list[_Rotated] = field(default_factory=list)  # the single-image scenes' turned buildings
    fields: list[_Field] = field(default_factory=list)

    def copy(self) -> _Scene:
        return _Scene(
            list(self.roads), list(self.soil), list(self.water), list(self.trees), list(self.buildings),
            list(self.rotated), list(self.fields),
        )  # fmt: skip


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
        for f in scene.fields:  # the land's texture, tinted with the crop colour
            crop = np.asarray(f.colour, np.float32) + 0.6 * (self.land - self.land.mean(axis=(0, 1)))
            crop[f.rows] *= 0.8
            img[f.mask] = crop[f.mask]
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
        turned = [(r, r.mask(self.yy, self.xx)) for r in scene.rotated]
        for _, m in turned:
            shadow[d:, d:] |= m[:-d, :-d]
            roofs |= m
        img[shadow & ~roofs] *= 0.5
        for b in scene.buildings:
            roof = np.asarray(b.colour, np.float32) + self.roof[b.y0 : b.y1, b.x0 : b.x1, None]
            # a gable roof: the ridge runs along the long side, the half away from the sun is darker
            if b.x1 - b.x0 >= b.y1 - b.y0:
                roof[(b.y1 - b.y0) // 2 :] *= 0.84
            else:
                roof[:, (b.x1 - b.x0) // 2 :] *= 0.84
            img[b.y0 : b.y1, b.x0 : b.x1] = roof
        for r, m in turned:
            roof = np.asarray(r.colour, np.float32) + self.roof[..., None]
            roof[r.local(self.yy, self.xx)[1] > 0] *= 0.84  # the ridge runs along the length
            img[m] = roof[m]
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


# ---------------------------------------------------------------------------- single-image scenes
def _place_rotated(rng: np.random.Generator, canvas: _Canvas, free: np.ndarray) -> _Rotated | None:
    """A turned building inside one grid cell (footprint and shadow), on free ground, or None."""
    size, d = canvas.size, canvas.shadow
    lo, hi = max(3, round(0.07 * size)), max(4, round(0.16 * size))
    for _ in range(30):
        cell = int(rng.integers(9))
        width, length = np.sort(rng.uniform(lo, hi + 1, 2))
        angle = float(rng.uniform(np.pi / 12, 5 * np.pi / 12)) * (1 if rng.random() < 0.5 else -1)
        y0b, y1b, x0b, x1b = _cell_box(cell, size)
        cy, cx = rng.uniform(y0b, y1b), rng.uniform(x0b, x1b)
        roof = int(rng.integers(len(_ROOFS)))
        colour = tuple(float(c) for c in np.asarray(_ROOFS[roof]) + rng.normal(0, 6, 3))
        r = _Rotated(float(cy), float(cx), float(length) / 2, float(width) / 2, angle, colour, cell)
        ys, xs = np.nonzero(r.mask(canvas.yy, canvas.xx))
        if len(ys) == 0:
            continue
        top, left, bottom, right = ys.min() - 1, xs.min() - 1, ys.max() + d + 2, xs.max() + d + 2
        if top >= y0b and left >= x0b and bottom <= y1b and right <= x1b and free[top:bottom, left:right].all():
            free[top:bottom, left:right] = False
            return r
    return None


def _roads(rng: np.random.Generator, canvas: _Canvas, scene: _Scene, free: np.ndarray, n: int) -> None:
    for vertical in [bool(rng.integers(2))] if n == 1 else [False, True][:n]:
        road = _place_road(rng, canvas, vertical, int(rng.integers(3)))
        scene.roads.append(road)
        free &= ~road.mask(canvas.size, margin=1)


def _blobs(
    rng: np.random.Generator, canvas: _Canvas, free: np.ndarray, count: int, radius: tuple[float, float], lobes: int
) -> np.ndarray:
    """Large irregular patches anywhere in the scene, on free ground (which they then use)."""
    size, union = canvas.size, np.zeros((canvas.size, canvas.size), bool)
    for _ in range(count):
        cy, cx = rng.uniform(0.15 * size, 0.85 * size, 2)
        union |= canvas.blob(rng, cy, cx, rng.uniform(*radius) * size, lobes)
    union &= free
    free &= ~union
    return union


def _fields(rng: np.random.Generator, size: int, free: np.ndarray) -> list[_Field]:
    rows_n, cols_n = int(rng.integers(2, 4)), int(rng.integers(2, 4))
    yy, xx = np.mgrid[0:size, 0:size]
    period = max(2, round(size / 16))
    fields = []
    for r in range(rows_n):
        for c in range(cols_n):
            m = np.zeros((size, size), bool)
            m[r * size // rows_n + 1 : (r + 1) * size // rows_n - 1, c * size // cols_n + 1 : (c + 1) * size // cols_n - 1] = True
            m &= free
            rows = ((xx if rng.random() < 0.5 else yy) // period) % 2 == 0
            fields.append(_Field(m, rows, _CROPS[int(rng.integers(len(_CROPS)))]))
    return fields


_LAND_CAPTIONS = {
    "residential": ("a residential area with {b} buildings", "{b} houses stand in a residential area",
                    "many buildings are arranged in a residential area", "houses are built along {r}",
                    "a residential area with houses and {r}"),
    "forest": ("a dense forest", "the scene is covered by trees", "a large area of green forest",
               "many trees grow closely together", "a forest with a dark green canopy"),
    "water": ("a large lake", "a body of water surrounded by land", "a lake takes up most of the scene",
              "the dark blue water of a lake", "a wide pond surrounded by grassland"),
    "farmland": ("farmland divided into {f} fields", "several crop fields with parallel rows",
                 "{f} fields of different crops", "the farmland is cut into rectangular fields",
                 "crops are planted in rows"),
    "bareland": ("a piece of bare land", "the ground is bare with little vegetation", "large areas of bare soil",
                 "brown bare land without buildings", "the scene is mostly bare soil"),
    "meadow": ("a green meadow", "an open grassland", "a meadow with few trees", "the scene is covered by grass",
               "a large area of grass"),
}  # fmt: skip


def _make_land_cover(rng: np.random.Generator, size: int, cls: str) -> tuple[np.ndarray, list[str]]:
    """A single scene whose content is dominated by land cover `cls`, and 3-5 captions of it."""
    canvas, scene, free = _Canvas(rng, size), _Scene(), np.ones((size, size), bool)
    if cls == "residential":
        _roads(rng, canvas, scene, free, int(rng.integers(1, 3)))
        for _ in range(int(rng.integers(10, 16))):
            if (b := _place_building(rng, canvas, free)) is not None:
                scene.buildings.append(b)
    elif cls == "forest":
        _roads(rng, canvas, scene, free, int(rng.integers(0, 2)))
        scene.trees.append(_blobs(rng, canvas, free, int(rng.integers(4, 7)), (0.3, 0.45), 4))
    elif cls == "water":
        scene.water.append(_blobs(rng, canvas, free, 1, (0.5, 0.65), 3))
        scene.trees.append(_blobs(rng, canvas, free, int(rng.integers(0, 3)), (0.1, 0.15), 3))
    elif cls == "farmland":
        _roads(rng, canvas, scene, free, int(rng.integers(0, 2)))
        scene.fields = _fields(rng, size, free)
    elif cls == "bareland":
        scene.soil.append(_blobs(rng, canvas, free, int(rng.integers(4, 6)), (0.35, 0.5), 4))
    else:  # meadow: open land with a few trees
        _roads(rng, canvas, scene, free, int(rng.integers(0, 2)))
        scene.trees.append(_blobs(rng, canvas, free, int(rng.integers(0, 3)), (0.08, 0.14), 3))
    n_roads = len(scene.roads)
    values = {"b": len(scene.buildings), "f": len(scene.fields),
              "r": "a road" if n_roads == 1 else f"{_NUMBER_WORDS.get(n_roads, n_roads)} roads"}  # fmt: skip
    templates = [t for t in _LAND_CAPTIONS[cls] if n_roads or "{r}" not in t]
    k = min(len(templates), int(rng.integers(3, 6)))
    captions = [templates[int(i)].format(**values) for i in rng.choice(len(templates), k, replace=False)]
    return canvas.render(scene, rng), captions


@dataclass
class _Objects:
    """An objects scene: the image, each building's polygon, box, roof colour name, cell and area,
    and what the questions count."""

    image: np.ndarray
    buildings: list[tuple[list[float], list[float], str, int, float]]
    roads: int
    water: int
    trees: int


def _roof_name(colour: tuple[float, float, float]) -> str:
    distances = [sum((a - b) ** 2 for a, b in zip(colour, roof, strict=True)) for roof in _ROOFS]
    return _ROOF_NAMES[int(np.argmin(distances))]


def _make_objects(rng: np.random.Generator, size: int) -> _Objects:
    canvas, scene, free = _Canvas(rng, size), _Scene(), np.ones((size, size), bool)
    _roads(rng, canvas, scene, free, int(rng.choice(3, p=[0.35, 0.4, 0.25])))
    for _ in range(int(rng.integers(0, 3))):
        if (patch := _place_patch(rng, canvas, free, (0.3, 0.45), 4, np.zeros_like(free))) is not None:
            scene.trees.append(patch[0])
    if rng.random() < 0.4 and (pond := _place_patch(rng, canvas, free, (0.25, 0.35), 2, ~free)):
        scene.water.append(pond[0])
    buildings = []
    for _ in range(int(rng.integers(2, 7))):
        if rng.random() < 0.5:
            if (b := _place_building(rng, canvas, free)) is not None:
                scene.buildings.append(b)
                polygon = [float(v) for v in (b.x0, b.y0, b.x1, b.y0, b.x1, b.y1, b.x0, b.y1)]
                buildings.append((polygon, polygon[:2] + polygon[4:6], _roof_name(b.colour), b.cell,
                                  float((b.x1 - b.x0) * (b.y1 - b.y0))))  # fmt: skip
        elif (r := _place_rotated(rng, canvas, free)) is not None:
            scene.rotated.append(r)
            polygon = r.corners()
            xs, ys = polygon[0::2], polygon[1::2]
            box = [max(0.0, min(xs)), max(0.0, min(ys)), min(float(size), max(xs)), min(float(size), max(ys))]
            buildings.append((polygon, box, _roof_name(r.colour), r.cell, 4 * r.half_len * r.half_wid))
    return _Objects(canvas.render(scene, rng), buildings, len(scene.roads), len(scene.water), len(scene.trees))


def _descriptions(rng: np.random.Generator, buildings: list[tuple]) -> list[str | None]:
    """A referring expression for each building that singles it out, or None where none does."""
    colours = [b[2] for b in buildings]
    cells = [b[3] for b in buildings]
    areas = [b[4] for b in buildings]
    out: list[str | None] = []
    for colour, cell, area in zip(colours, cells, areas, strict=True):
        where = _pick(rng, _CELL_PHRASES[cell])
        options = []
        if sum(c == colour and k == cell for c, k in zip(colours, cells, strict=True)) == 1:
            options.append(f"the {colour} building {where}")
        if colours.count(colour) == 1:
            options.append(f"the {colour} building")
        if cells.count(cell) == 1:
            options.append(f"the building {where}")
        if len(areas) > 1 and area == max(areas) and areas.count(area) == 1:
            options.append("the largest building")
        out.append(_pick(rng, tuple(options)) if options else None)
    return out


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _vqa(rng: np.random.Generator, objects: _Objects) -> list[tuple[str, str, str]]:
    """RSVQA-style (type, question, answer): one presence, one count and one comparison question."""
    nb, nr, nw = len(objects.buildings), objects.roads, objects.water
    presence = (("are there buildings?", nb > 0), ("is there a road?", nr > 0),
                ("is there a water area?", nw > 0), ("are there trees?", objects.trees > 0))  # fmt: skip
    comparison = (("are there more buildings than roads?", nb > nr),
                  ("are there more roads than water areas?", nr > nw),
                  ("is the number of roads equal to the number of water areas?", nr == nw))  # fmt: skip
    question, answer = presence[int(rng.integers(len(presence)))]
    compare, compared = comparison[int(rng.integers(len(comparison)))]
    return [
        ("presence", question, _yes(answer)),
        ("count", "how many buildings are there?", str(nb)),
        ("comparison", compare, _yes(compared)),
    ]


def _voc_xml(name: str, size: int, objects: list[tuple[list[float], str]]) -> str:
    """RSVG / DIOR-RSVG style annotation: one `<object>` per described building."""
    parts = [f"<annotation>\n  <filename>{name}</filename>\n"
             f"  <size><width>{size}</width><height>{size}</height><depth>3</depth></size>\n"]  # fmt: skip
    for box, text in objects:
        x1, y1, x2, y2 = (number(v) for v in box)
        parts.append(
            f"  <object>\n    <name>building</name>\n    <bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>\n    <description>{escape(text)}</description>\n  </object>\n"
        )
    return "".join(parts) + "</annotation>\n"


class _SingleImages:
    """Collects the single-image scenes' annotations while `_write` runs, then writes the files."""

    def __init__(self, out: Path, seed: int, size: int) -> None:
        self.out, self.seed, self.size = out, seed, size
        for cls in LAND_COVER:
            (out / "scenes" / cls).mkdir(parents=True)
        (out / "scenes" / "list").mkdir()
        for sub in ("images", "labelTxt", "Annotations"):
            (out / "objects" / sub).mkdir(parents=True)
        self.coco: dict[str, list[dict[str, Any]]] = {"images": [], "annotations": []}
        self.lists: dict[str, list[str]] = {s: [] for s in SPLITS}
        self.ids: dict[str, list[str]] = {s: [] for s in SPLITS}
        self.questions: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
        self.answers: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}

    def add(self, split: str, index: int, name: str, imgid: int) -> None:
        cls = LAND_COVER[index % len(LAND_COVER)]  # in turn: every split has every class
        image, captions = _make_land_cover(np.random.default_rng([self.seed, imgid, _LAND_TAG]), self.size, cls)
        _save_png(image, self.out / "scenes" / cls / name)
        self.lists[split].append(f"{cls}/{name}")
        self.coco["images"].append({"id": imgid, "file_name": f"{cls}/{name}", "split": split,
                                    "width": self.size, "height": self.size})  # fmt: skip
        for caption in captions:
            self.coco["annotations"].append({"id": len(self.coco["annotations"]), "image_id": imgid, "caption": caption})

        rng = np.random.default_rng([self.seed, imgid, _OBJECTS_TAG])
        objects = _make_objects(rng, self.size)
        stem = str(imgid)  # RSVQA names images by their integer id
        _save_png(objects.image, self.out / "objects" / "images" / f"{stem}.png")
        self.ids[split].append(stem)
        labels = "".join(" ".join(number(v) for v in b[0]) + " building 0\n" for b in objects.buildings)
        (self.out / "objects" / "labelTxt" / f"{stem}.txt").write_text("imagesource:rsforge-synth\ngsd:null\n" + labels)
        described = [(b[1], text) for b, text in zip(objects.buildings, _descriptions(rng, objects.buildings), strict=True)
                     if text is not None]  # fmt: skip
        (self.out / "objects" / "Annotations" / f"{stem}.xml").write_text(_voc_xml(f"{stem}.png", self.size, described))
        for qtype, question, answer in _vqa(rng, objects):
            qid = sum(len(q) for q in self.questions.values())
            self.questions[split].append({"id": qid, "img_id": imgid, "type": qtype, "question": question,
                                          "answers_ids": [qid], "active": True})  # fmt: skip
            self.answers[split].append({"id": qid, "question_id": qid, "answer": answer, "active": True})

    def finish(self) -> None:
        (self.out / "scenes" / "captions.json").write_text(json.dumps(self.coco))
        for split in SPLITS:
            (self.out / "scenes" / "list" / f"{split}.txt").write_text("".join(f"{n}\n" for n in self.lists[split]))
            (self.out / "objects" / f"{split}.txt").write_text("".join(f"{n}\n" for n in self.ids[split]))
            prefix = self.out / "objects" / f"synth_split_{split}"
            Path(f"{prefix}_questions.json").write_text(json.dumps({"questions": self.questions[split]}))
            Path(f"{prefix}_answers.json").write_text(json.dumps({"answers": self.answers[split]}))
            images = sorted({q["img_id"] for q in self.questions[split]})
            Path(f"{prefix}_images.json").write_text(json.dumps({"images": [
                {"id": i, "questions_ids": [q["id"] for q in self.questions[split] if q["img_id"] == i], "active": True}
                for i in images]}))  # fmt: skip


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
    singles = _SingleImages(out, seed, size)
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
                singles.add(split, i, name, imgid)
                names.append(name)
                prompt_lines.append(f"{name}  {pair.captions[0]}\n")  # SegChange-R1: name, two spaces, text
                imgid += 1
                sentid += len(pair.captions)
                bar.update()
            (out / "list" / f"{split}.txt").write_text("".join(f"{nm}\n" for nm in names))
            (out / split / "prompts.txt").write_text("".join(prompt_lines))
    (out / "captions.json").write_text(json.dumps({"images": images, "dataset": "rsforge-synth"}))
    (out / "conversations.json").write_text(json.dumps(conversations))
    singles.finish()
    params = synth_params(n, seed, size, val_frac, test_frac)
    (out / "synth.json").write_text(json.dumps({**params, "splits": sizes}, indent=2) + "\n")


def _pair_conversations(split: str, name: str, pair: _Pair) -> list[dict[str, Any]]:
    """ChangeChat style: one entry per task, plus a multi-turn dialogue going from coarse to fine."""
    stem, image = name.removesuffix(".png"), [f"{split}/A/{name}", f"{split}/B/{name}"]
    caption = ("change_captioning", prompt_for("change_captioning"), pair.captions[0])
    entries = [
        {"id": f"{stem}_{task}", "image": image, "task": task, "split": split,
         "conversations": _conversation([(q, a)])}
        for task, q, a in (caption, *pair.qa)
    ]  # fmt: skip
    dialogue = [(q, a) for _, q, a in (*pair.qa, caption)]
    entries.append({"id": f"{stem}_multi_turn", "image": image, "task": "change_qa", "split": split,
                    "conversations": _conversation(dialogue)})  # fmt: skip
    return entries


# ------------------------------------------------------------------------------ dataset registry
SynthFormat = Literal["levir_cc", "changechat", "coco_captions", "class_folders", "rsvqa", "rsvg", "dota"]


class SynthDatasetConfig(DatasetConfig):
    """The synthetic dataset, generated on first use into `root` (default
    `data/synth-n{n}-s{seed}-{size}px` under the working directory) and reused while it matches.
    `format` picks the part read, by the name of its reader: "levir_cc" (change captions, the
    default), "changechat" (change QA), "coco_captions" / "class_folders" (land-cover scenes),
    "rsvqa" / "rsvg" / "dota" (objects scenes)."""

    name: str = "synth"
    n: int = Field(600, ge=1)
    seed: int = Field(0, ge=0)
    size: int = Field(64, ge=MIN_SIZE)
    root: str | None = None
    format: SynthFormat = "levir_cc"


def _cached(root: Path, params: dict) -> bool:
    try:
        found = json.loads((root / "synth.json").read_text())
    except (OSError, ValueError):
        return False
    return {k: found.get(k) for k in params} == params


def load_synth(config: SynthDatasetConfig, split: str) -> list[Sample]:
    """Samples of `split` through the reader of `config.format`; captions for training come one
    sample per reference."""
    from rsforge.core.data import captions, changechat, classification, grounding, rsvqa

    root = Path(config.root or f"data/synth-n{config.n}-s{config.seed}-{config.size}px")
    params = synth_params(config.n, config.seed, config.size)
    if not _cached(root, params):
        # A folder the user named is their data: never regenerate it behind their back.
        if config.root is not None and (root / "synth.json").is_file():
            found = json.loads((root / "synth.json").read_text())
            differs = {k: (found.get(k), v) for k, v in params.items() if found.get(k) != v}
            raise ValueError(
                f"{root} holds a synthetic dataset made with other parameters (found, asked): {differs}; "
                "set n/seed/size to match it, or give another root"
            )
        generate(root, config.n, config.seed, config.size)
    train = split == "train"
    readers = {
        "levir_cc": lambda: read_levir_cc(root, split, per_reference=train),
        "changechat": lambda: changechat.read_changechat(root, split),
        "coco_captions": lambda: captions.read_coco_captions(root / "scenes", split, per_reference=train),
        "class_folders": lambda: classification.read_class_folders(root / "scenes", split),
        "rsvqa": lambda: rsvqa.read_rsvqa(root / "objects", split),
        "rsvg": lambda: grounding.read_rsvg(root / "objects", split),
        "dota": lambda: grounding.read_dota(root / "objects", split),
    }
    return readers[config.format]()
