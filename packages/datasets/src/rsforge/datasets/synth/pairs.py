"""Bi-temporal pairs: one scene drawn before and after its changes, with the change events."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rsforge.datasets.synth.drawing import _ROOFS, _bounds, _Building, _Canvas, _cell_box, _Road, _Scene
from rsforge.datasets.synth.language import ChangeEvent, change_captions, question_answers


# ------------------------------------------------------------------------------------------ scenes
@dataclass
class _Pair:
    before: np.ndarray
    after: np.ndarray
    mask: np.ndarray
    events: list[ChangeEvent]
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
        events.append(ChangeEvent("built", len(built), sorted({b.cell for b in built})))
    if gone:
        after.buildings = [b for b in after.buildings if all(b is not g for g in gone)]
        for b in gone:
            after.soil.append(b.footprint(size))  # rubble: bare soil where the building stood
            change |= b.footprint(size)
        events.append(ChangeEvent("demolished", len(gone), sorted({b.cell for b in gone})))
    if new_road is not None:
        after.roads.append(new_road)
        fresh = new_road.mask(size)
        for road in scene.roads:
            fresh &= ~road.mask(size)  # a crossing with an old road is not a change
        change |= fresh
        events.append(ChangeEvent("road", 1, new_road.cells(), new_road))
    if cleared:
        after.trees = after.trees[len(cleared) :]
        for m, _ in cleared:
            after.soil.append(m)
            change |= m
        events.append(ChangeEvent("trees", len(cleared), sorted({c for _, c in cleared})))

    return _Pair(
        before=canvas.render(scene, rng),
        after=canvas.render(after, rng),
        mask=change.astype(np.uint8) * 255,
        events=events,
        captions=change_captions(rng, events),
        qa=question_answers(events),
    )
