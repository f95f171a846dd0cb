"""Split DOTA scenes into overlapping patches, as DOTA_devkit's `ImgSplit_multi_process.py` does
(CAPTAIN-WHU/DOTA_devkit at commit 9938855, `splitbase.SplitSingle` / `savepatches`), with the
settings of its example run (subsize 1024, gap 200, thresh 0.7, padding on). Rules followed:

- the label polygons are truncated to integers, then scaled by `rate` (as `parse_dota_poly2` and
  `SplitSingle` do); the image is resized by `rate` (bicubic) when `rate` is not 1;
- patch origins: `left` runs 0, slide, 2 * slide, ... (slide = subsize - gap) and the last patch is
  moved back to end at the image's edge (`max(width - subsize, 0)`); the same for `up`, in an inner
  loop; patch `<id>__<rate>__<left>___<up>`, rate written as Python writes it (1, 0.5);
- an instance is tested against the patch rectangle (left, up)-(min(left + subsize, width - 1),
  min(up + subsize, height - 1)); degenerate ones (area 0) are left out. Wholly inside: written
  shifted to the patch, integers truncated, with its difficult flag. Partly inside: the intersection
  (counter-clockwise), a 5-point one merged to 4 points at the midpoint of its shortest edge, those
  of fewer than 4 or more than 5 points left out; corners reordered to best fit the original,
  shifted and truncated, clamped to [1, subsize]; its flag kept when the part inside is more than
  `thresh` of its area, else 2 (the devkit's mark for a piece too small to learn from);
- patches are padded with black to subsize x subsize.

Differences, all harmless to readers of the devkit's output: the label files also carry the scene's
`imagesource:` / `gsd:` header (gsd divided by `rate`); numbers are written without ".0"; an
intersection that is not one polygon (the devkit would crash on it) is left out; and `list/<split>.txt`
is written for each split list of the source (`list/all.txt` when it has none) so that
`rsforge.datasets.dota` reads the output.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from shapely.geometry import Polygon
from shapely.geometry.polygon import orient

from rsforge.core.atomic import atomic_dir
from rsforge.datasets.common import IMAGE_SUFFIXES, SPLITS, find_image, log, read_lines, split_list
from rsforge.datasets.dota_labels import Instance, LabelFile, label_text, read_label_file

ALL_SPLIT = "all"


@dataclass(frozen=True)
class SplitOptions:
    subsize: int = 1024
    gap: int = 200
    rate: float = 1.0
    thresh: float = 0.7

    def __post_init__(self) -> None:
        if not 0 <= self.gap < self.subsize:
            raise ValueError(f"split-dota: gap must be in [0, subsize), got gap {self.gap}, subsize {self.subsize}")
        if self.rate <= 0 or not 0 <= self.thresh <= 1:
            raise ValueError(f"split-dota: rate must be > 0 and thresh in [0, 1], got {self.rate}, {self.thresh}")

    @property
    def rate_name(self) -> str:
        """`rate` as the devkit's `str(rate)` writes it in patch names: "1", "0.5"."""
        return str(int(self.rate)) if float(self.rate).is_integer() else str(self.rate)


def starts(length: int, subsize: int, gap: int) -> list[int]:
    """The devkit's patch origins along one axis of `length` pixels."""
    out, pos = [], 0
    while pos < length:
        if pos + subsize >= length:
            pos = max(length - subsize, 0)
        out.append(pos)
        if pos + subsize >= length:
            break
        pos += subsize - gap
    return out


def _best_order(points: list[float], original: tuple[float, ...]) -> list[float]:
    """The cyclic rotation of the 4 corners nearest (sum of squared distances) to the original's."""
    rotations = [points[k:] + points[:k] for k in range(0, 8, 2)]
    return min(rotations, key=lambda r: sum((a - b) ** 2 for a, b in zip(r, original, strict=True)))


def _five_to_four(points: list[float]) -> list[float]:
    """Merge the shortest edge of a 5-point polygon into its midpoint."""
    xy = [(points[k], points[k + 1]) for k in range(0, 10, 2)]
    lengths = [np.hypot(xy[k][0] - xy[(k + 1) % 5][0], xy[k][1] - xy[(k + 1) % 5][1]) for k in range(5)]
    short = int(np.argsort(lengths, kind="stable")[0])
    out: list[float] = []
    for k in range(5):
        if k == short:
            out += [(xy[k][0] + xy[(k + 1) % 5][0]) / 2, (xy[k][1] + xy[(k + 1) % 5][1]) / 2]
        elif k != (short + 1) % 5:
            out += list(xy[k])
    return out


def _shift(points: list[float] | tuple[float, ...], left: int, up: int) -> list[int]:
    return [int(v - (left if k % 2 == 0 else up)) for k, v in enumerate(points)]


def patch_instances(instances: list[Instance], left: int, up: int, width: int, height: int,
                    options: SplitOptions) -> list[Instance]:
    """The instances of the patch at (left, up) of a (rate-scaled) scene, in its coordinates."""
    right, down = min(left + options.subsize, width - 1), min(up + options.subsize, height - 1)
    patch = Polygon([(left, up), (right, up), (right, down), (left, down)])
    out = []
    for instance in instances:
        p = instance.polygon
        shape = Polygon([(p[k], p[k + 1]) for k in range(0, 8, 2)])
        if shape.area <= 0:
            continue
        inside = shape.intersection(patch)
        ratio = inside.area / shape.area
        if ratio == 1:
            out.append(Instance(tuple(_shift(p, left, up)), instance.category, instance.difficult, instance.line))
            continue
        if ratio <= 0 or not isinstance(inside, Polygon):
            continue
        corners = list(orient(inside, sign=1).exterior.coords)[:-1]
        if not 4 <= len(corners) <= 5:
            continue
        flat = [c for point in corners for c in point]
        flat = _best_order(_five_to_four(flat) if len(corners) == 5 else flat, p)
        clamped = [min(max(v, 1), options.subsize) for v in _shift(flat, left, up)]
        difficult = instance.difficult if ratio > options.thresh else 2
        out.append(Instance(tuple(clamped), instance.category, difficult, instance.line))
    return out


@contextlib.contextmanager
def _whole_scenes() -> Iterator[None]:
    """Lift PIL's decompression-bomb guard while a scene is read: DOTA scenes reach 20000 x 20000
    pixels, and splitting them is what keeps them away from the model's readers (which keep theirs)."""
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _scene(image_path: Path, options: SplitOptions) -> np.ndarray:
    with _whole_scenes(), Image.open(image_path) as im:
        scene = im.convert("RGB")
        if options.rate != 1:
            size = (round(scene.width * options.rate), round(scene.height * options.rate))
            scene = scene.resize(size, Image.Resampling.BICUBIC)
        return np.asarray(scene)


def split_scene(image_path: Path, label: LabelFile, images_out: Path, labels_out: Path,
                options: SplitOptions) -> list[str]:
    """Write the patches of one scene and their label files; returns the patch ids."""
    scene = _scene(image_path, options)
    height, width = scene.shape[:2]
    instances = [Instance(tuple(int(v) * options.rate for v in i.polygon), i.category, i.difficult, i.line)
                 for i in label.instances]  # fmt: skip
    gsd = None if label.gsd is None else label.gsd / options.rate
    stem, size, ids = image_path.stem, options.subsize, []
    for left in starts(width, size, options.gap):
        for up in starts(height, size, options.gap):
            name = f"{stem}__{options.rate_name}__{left}___{up}"
            inside = patch_instances(instances, left, up, width, height, options)
            (labels_out / f"{name}.txt").write_text(label_text(inside, label.image_source, gsd), encoding="utf-8")
            patch = np.zeros((size, size, 3), np.uint8)
            crop = scene[up : up + size, left : left + size]
            patch[: crop.shape[0], : crop.shape[1]] = crop
            Image.fromarray(patch).save(images_out / f"{name}.png")
            ids.append(name)
    return ids


@dataclass
class SplitSummary:
    scenes: int
    patches: int
    skipped: list[str]  # scenes left out, each with why


def _scene_lists(src: Path, stems: list[str]) -> dict[str, set[str]]:
    lists = {s: set(read_lines(f)) for s in SPLITS if (f := split_list(src, s)) is not None}
    return lists or {ALL_SPLIT: set(stems)}


def split_dota(src: str | Path, out: str | Path, options: SplitOptions = SplitOptions(), *,
               progress: bool = True) -> SplitSummary:
    """Split every scene of `src/images` with its `src/labelTxt/<id>.txt` into `out/images`,
    `out/labelTxt` and `out/list/<split>.txt` (module docstring). `out` appears whole or not at
    all: it is built beside itself, then renamed (an `out` that holds anything else is refused)."""
    from tqdm.auto import tqdm

    src, out = Path(src).resolve(), Path(out).resolve()
    images, labels = src / "images", src / "labelTxt"
    for folder in (images, labels):
        if not folder.is_dir():
            raise FileNotFoundError(f"split-dota: {folder} not found (SRC holds images/ and labelTxt/, as in DOTA)")
    if out.exists() and any(p.name not in ("images", "labelTxt", "list") for p in out.iterdir()):
        raise FileExistsError(f"split-dota: {out} holds other files; give an empty or new folder")
    stems = sorted(p.stem for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not stems:
        raise FileNotFoundError(f"split-dota: no images in {images}")
    skipped, patches = [], {}
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        (tmp / "labelTxt").mkdir()
        for stem in tqdm(stems, desc="split-dota", unit="scene", disable=None if progress else True):
            label_path = labels / f"{stem}.txt"
            if not label_path.is_file():
                skipped.append(f"{find_image(images, stem)}: no label file {label_path}")
                continue
            try:
                label = read_label_file(label_path)
            except ValueError as exc:
                skipped.append(str(exc))
                continue
            for problem in label.problems:
                log.warning("%s; line left out", problem)
            patches[stem] = split_scene(find_image(images, stem), label, tmp / "images", tmp / "labelTxt", options)
        (tmp / "list").mkdir()
        for split, members in _scene_lists(src, stems).items():
            ids = [i for stem in sorted(members & patches.keys()) for i in patches[stem]]
            (tmp / "list" / f"{split}.txt").write_text("".join(i + "\n" for i in ids), encoding="utf-8")
    for reason in skipped:
        log.warning("split-dota: %s; scene skipped", reason)
    return SplitSummary(len(patches), sum(map(len, patches.values())), skipped)
