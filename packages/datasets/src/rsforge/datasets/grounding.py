"""Visual grounding with boxes: RSVG / DIOR-RSVG (axis-aligned) and DOTA (oriented).

RSVG / DIOR-RSVG: a Pascal-VOC-like XML per image, `<annotations_dir>/<id>.xml`, with
`<filename>` and `<object>`s holding `<name>`, `<bndbox>` (`xmin ymin xmax ymax`) and a referring
`<description>`; images in `JPEGImages/` (or `images/`); a split's ids in `<root>/<split>.txt` (or
`<root>/list/<split>.txt`). One sample per (image, described object); the answer is the box text
`[x1, y1, x2, y2]` in pixels as written in the XML. DIOR-RSVG's own split files list running
object indices (over the objects of all XML files in sorted order), not image ids: read them with
`split_by="object_index"`.

DOTA: `labelTxt/<id>.txt` lines `x1 y1 x2 y2 x3 y3 x4 y4 class difficulty` (header lines such as
`imagesource:` / `gsd:` are skipped) and `images/<id>.png`, either per split (`<root>/<split>/`)
or shared with the split's ids in `<root>/<split>.txt` (or `list/<split>.txt`). One
oriented_grounding sample per (image, class): the answer lists every instance's 8-number polygon in
pixels, `[x1, y1, ..., x4, y4], [...]`; groups of more than `max_instances` are left out (answers
that long train badly), as counted in a log line.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

from pydantic import Field

from rsforge.core.configs import DatasetConfig
from rsforge.core.sample import Sample, Turn
from rsforge.datasets.common import (
    Skips,
    coords_text,
    find_image,
    first_dir,
    log,
    no_split,
    read_lines,
    split_list,
    under,
)
from rsforge.datasets.prompts import prompt_for

RSVG_IMAGE_DIRS = ("JPEGImages", "images")


def _box(obj: ET.Element) -> list[float] | None:
    box = obj.find("bndbox")
    try:
        x1, y1, x2, y2 = (float(box.findtext(k, "")) for k in ("xmin", "ymin", "xmax", "ymax"))
    except (AttributeError, ValueError):
        return None
    return [x1, y1, x2, y2] if 0 <= x1 < x2 and 0 <= y1 < y2 else None


def _parse_xml(path: Path) -> ET.Element | None:
    try:
        return ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        log.warning("%s: unreadable annotation (%s); skipped", path, exc)
        return None


def read_rsvg(
    root: str | Path,
    split: str,
    *,
    annotations_dir: str = "Annotations",
    images_dir: str | None = None,
    split_by: Literal["image", "object_index"] = "image",
) -> list[Sample]:
    root = Path(root).resolve()
    list_file = split_list(root, split)
    if list_file is None:
        found = sorted({p.stem for p in [*root.glob("*.txt"), *root.glob("list/*.txt")]})
        raise no_split(root, split, f"{root / (split + '.txt')} or {root / 'list' / (split + '.txt')}", found)
    ids = read_lines(list_file)
    annotations = root / annotations_dir
    if not annotations.is_dir():
        raise FileNotFoundError(f"RSVG annotations folder not found: {annotations}")
    folder = under(root, images_dir, first_dir(root, RSVG_IMAGE_DIRS))
    if split_by == "object_index":
        wanted = {int(i) for i in ids}
        xml_files = sorted(annotations.glob("*.xml"))
    else:
        wanted = None
        xml_files = [annotations / f"{i}.xml" for i in ids]

    skips, samples, total, running = Skips(list_file, split), [], 0, 0
    for xml_file in xml_files:
        if not xml_file.is_file():
            total += 1
            skips.skip(xml_file, f"missing annotation ({list_file})")
            continue
        tree = _parse_xml(xml_file)
        objects = [] if tree is None else tree.findall("object")
        picked = []
        for k, obj in enumerate(objects):
            if wanted is None or running + k in wanted:
                picked.append((k, obj))
        running += len(objects)
        if tree is None:
            skips.count += 1
            total += 1
            continue
        total += len(picked)
        name = (tree.findtext("filename") or "").strip()
        image = folder / name if name else find_image(folder, xml_file.stem)
        if image is None or not image.is_file():
            if picked:
                skips.skip(image or folder / xml_file.stem, f"missing image ({xml_file})", n=len(picked))
            continue
        for k, obj in picked:
            expression = " ".join((obj.findtext("description") or "").split())
            box = _box(obj)
            if not expression or box is None:
                skips.skip(xml_file, f"object {k}: {'no description' if not expression else 'no valid bndbox'}")
                continue
            answer = coords_text(box)
            samples.append(
                Sample(
                    id=f"{xml_file.stem}#{k}",
                    images=(str(image),),
                    conversation=[Turn("user", prompt_for("grounding", expression=expression)),
                                  Turn("assistant", answer)],
                    task="grounding",
                    boxes=[box],
                    references=[answer],
                    meta={"expression": expression, "category": (obj.findtext("name") or "").strip()},
                )
            )
    skips.summary(total)
    return samples


def _dota_layout(root: Path, split: str) -> tuple[Path, list[str], Path]:
    """(labelTxt folder, the split's ids, where they came from)."""
    if (root / split / "labelTxt").is_dir():
        labels = root / split / "labelTxt"
        return labels, sorted(p.stem for p in labels.glob("*.txt")), labels
    list_file = split_list(root, split)
    if (root / "labelTxt").is_dir() and list_file is not None:
        return root / "labelTxt", read_lines(list_file), list_file
    found = sorted({p.parent.parent.name for p in root.glob("*/labelTxt/")} | {p.stem for p in root.glob("*.txt")})
    raise no_split(root, split, f"{root / split / 'labelTxt'} and {root / 'labelTxt'} with {split}.txt", found)


def _dota_objects(path: Path, skips: Skips) -> dict[str, list[list[float]]] | None:
    """Polygons per class, in file order; None when the file cannot be read."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("%s: unreadable label file (%s); skipped", path, exc)
        return None
    objects: dict[str, list[list[float]]] = {}
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or (len(fields) == 1 and ":" in fields[0]):  # blank, imagesource:..., gsd:...
            continue
        try:
            polygon = [float(v) for v in fields[:8]]
            cls = fields[8]
        except (ValueError, IndexError):
            skips.skip(f"{path}:{n}", "not 'x1 y1 ... x4 y4 class [difficulty]'", n=0)
            continue
        objects.setdefault(cls, []).append(polygon)
    return objects


def read_dota(root: str | Path, split: str, *, max_instances: int | None = 20) -> list[Sample]:
    root = Path(root).resolve()
    labels, ids, source = _dota_layout(root, split)
    images = first_dir(labels.parent, ("images",))
    skips, samples, total, crowded = Skips(source, split), [], 0, 0
    for stem in ids:
        label = labels / f"{stem}.txt"
        total += 1
        if not label.is_file():
            skips.skip(label, f"missing label file ({source})")
            continue
        objects = _dota_objects(label, skips)
        image = find_image(images, stem)
        if objects is None or image is None:
            if objects is None:
                skips.count += 1
            else:
                skips.skip(images / f"{stem}.png", f"missing image ({label})")
            continue
        for cls in sorted(objects):
            polygons = objects[cls]
            if max_instances is not None and len(polygons) > max_instances:
                crowded += 1
                continue
            expression = "every " + cls.replace("-", " ").replace("_", " ")
            answer = ", ".join(coords_text(p) for p in polygons)
            samples.append(
                Sample(
                    id=f"{stem}#{cls}",
                    images=(str(image),),
                    conversation=[
                        Turn("user", prompt_for("oriented_grounding", expression=expression)),
                        Turn("assistant", answer),
                    ],
                    task="oriented_grounding",
                    boxes=polygons,
                    references=[answer],
                    meta={"expression": expression, "category": cls},
                )
            )
    if crowded:
        log.info("%s: left out %d (image, class) groups with more than %d instances", source, crowded, max_instances)
    skips.summary(total)
    return samples


class RsvgDatasetConfig(DatasetConfig):
    """RSVG / DIOR-RSVG grounding (module docstring). `images_dir` defaults to JPEGImages/ or
    images/ in `root`; `split_by="object_index"` reads DIOR-RSVG's own split files."""

    name: str = "rsvg"
    root: str
    annotations_dir: str = "Annotations"
    images_dir: str | None = None
    split_by: Literal["image", "object_index"] = "image"


def load_rsvg(config: RsvgDatasetConfig, split: str) -> list[Sample]:
    return read_rsvg(
        config.root,
        split,
        annotations_dir=config.annotations_dir,
        images_dir=config.images_dir,
        split_by=config.split_by,
    )


class DotaDatasetConfig(DatasetConfig):
    """DOTA oriented boxes (module docstring); `max_instances`: largest group per (image, class),
    None for no limit."""

    name: str = "dota"
    root: str
    max_instances: int | None = Field(20, ge=1)


def load_dota(config: DotaDatasetConfig, split: str) -> list[Sample]:
    return read_dota(config.root, split, max_instances=config.max_instances)
