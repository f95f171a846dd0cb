"""Single-image scenes: land cover (classification, captioning) and objects (grounding, oriented
boxes, VQA)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from rsforge.datasets.common import SPLITS, number
from rsforge.datasets.synth.drawing import (
    _CROPS,
    _ROOF_NAMES,
    _ROOFS,
    _Canvas,
    _cell_box,
    _Field,
    _Rotated,
    _save_png,
    _Scene,
)
from rsforge.datasets.synth.language import _CELL_PHRASES, _NUMBER_WORDS, _pick
from rsforge.datasets.synth.pairs import _place_building, _place_patch, _place_road

LAND_COVER = ("residential", "forest", "water", "farmland", "bareland", "meadow")
# generator streams of the single-image scenes: seeded (seed, index, tag), apart from the pairs' (seed, index)
_LAND_TAG, _OBJECTS_TAG = 1, 2



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
            rows = slice(r * size // rows_n + 1, (r + 1) * size // rows_n - 1)
            m[rows, c * size // cols_n + 1 : (c + 1) * size // cols_n - 1] = True
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
            annotation = {"id": len(self.coco["annotations"]), "image_id": imgid, "caption": caption}
            self.coco["annotations"].append(annotation)

        rng = np.random.default_rng([self.seed, imgid, _OBJECTS_TAG])
        objects = _make_objects(rng, self.size)
        stem = str(imgid)  # RSVQA names images by their integer id
        _save_png(objects.image, self.out / "objects" / "images" / f"{stem}.png")
        self.ids[split].append(stem)
        labels = "".join(" ".join(number(v) for v in b[0]) + " building 0\n" for b in objects.buildings)
        (self.out / "objects" / "labelTxt" / f"{stem}.txt").write_text("imagesource:rsforge-synth\ngsd:null\n" + labels)
        texts = _descriptions(rng, objects.buildings)
        described = [(b[1], text) for b, text in zip(objects.buildings, texts, strict=True)
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
