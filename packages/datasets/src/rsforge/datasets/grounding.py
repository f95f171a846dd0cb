"""Visual grounding with boxes: RSVG / DIOR-RSVG (axis-aligned). DOTA (oriented boxes) is
`rsforge.datasets.dota`.

RSVG / DIOR-RSVG: a Pascal-VOC-like XML per image, `<annotations_dir>/<id>.xml`, with
`<filename>` and `<object>`s holding `<name>`, `<bndbox>` (`xmin ymin xmax ymax`) and a referring
`<description>`; images in `JPEGImages/` (or `images/`); a split's ids in `<root>/<split>.txt` (or
`<root>/list/<split>.txt`). One sample per (image, described object); the answer is the box text
`[x1, y1, x2, y2]` in the config's `coordinates` (`rsforge.datasets.prompts.coordinates_text`), and
`Sample.boxes` the box in pixels as written in the XML, with `meta["coordinates"]` and
`meta["image_size"]` (width, height) for evaluation. DIOR-RSVG's own split files list running
object indices (over the objects of all XML files in sorted order), not image ids: read them with
`split_by="object_index"`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

from rsforge.core.configs import DatasetConfig
from rsforge.core.sample import Sample, Turn
from rsforge.datasets.common import Skips, find_image, first_dir, log, no_split, read_lines, split_list, under
from rsforge.datasets.dota import image_size, read_dota
from rsforge.datasets.prompts import META_COORDINATES, META_IMAGE_SIZE, Coordinates, coordinates_text, prompt_for

# DOTA moved to its own module; the synthetic generator and older callers still import it from here.
__all__ = ["RsvgDatasetConfig", "load_rsvg", "read_dota", "read_rsvg"]

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
    coordinates: Coordinates = "pixels",
) -> list[Sample]:
    """The grounding samples of `split` (module docstring). `coordinates` defaults to pixels here for
    callers that write pixel answers (the synthetic generator); `RsvgDatasetConfig` defaults to norm1000."""
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
        try:
            size = image_size(image)
        except ValueError as exc:
            skips.skip(image, str(exc), n=len(picked))
            continue
        for k, obj in picked:
            expression = " ".join((obj.findtext("description") or "").split())
            box = _box(obj)
            if not expression or box is None:
                skips.skip(xml_file, f"object {k}: {'no description' if not expression else 'no valid bndbox'}")
                continue
            answer = coordinates_text(box, size, coordinates)
            samples.append(
                Sample(
                    id=f"{xml_file.stem}#{k}",
                    images=(str(image),),
                    conversation=[Turn("user", prompt_for("grounding", expression=expression)),
                                  Turn("assistant", answer)],
                    task="grounding",
                    boxes=[box],
                    references=[answer],
                    meta={"expression": expression, "category": (obj.findtext("name") or "").strip(),
                          META_COORDINATES: coordinates, META_IMAGE_SIZE: size},
                )
            )
    skips.summary(total)
    return samples


class RsvgDatasetConfig(DatasetConfig):
    """RSVG / DIOR-RSVG grounding (module docstring). `images_dir` defaults to JPEGImages/ or
    images/ in `root`; `split_by="object_index"` reads DIOR-RSVG's own split files; `coordinates`: the
    units of the answers, norm1000 (0-999 of the image's width and height) or pixels."""

    name: str = "rsvg"
    root: str
    annotations_dir: str = "Annotations"
    images_dir: str | None = None
    split_by: Literal["image", "object_index"] = "image"
    coordinates: Coordinates = "norm1000"


def load_rsvg(config: RsvgDatasetConfig, split: str) -> list[Sample]:
    return read_rsvg(
        config.root,
        split,
        annotations_dir=config.annotations_dir,
        images_dir=config.images_dir,
        split_by=config.split_by,
        coordinates=config.coordinates,
    )
