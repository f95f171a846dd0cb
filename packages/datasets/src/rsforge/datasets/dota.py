"""DOTA oriented boxes as released (v1.0, v1.5, v2.0), or as split into patches by
`rsforge data split-dota` (DOTA_devkit's `ImgSplit_multi_process.py`).

Layout: `labelTxt/<id>.txt` (the devkit's format, `rsforge.datasets.dota_labels`) and
`images/<id>.png`, either per split (`<root>/<split>/`) or shared with the split's ids in
`<root>/<split>.txt` (or `list/<split>.txt`). One oriented_grounding sample per (image, class): the
answer lists every instance's polygon, `[x1, y1, ..., x4, y4], [...]`, in the config's `coordinates`
(`rsforge.datasets.prompts.coordinates_text`); `Sample.boxes` keep them in pixels, aligned with
`meta["difficult"]` (each instance's flag). `meta` also holds `gsd` and `image_source` from the
label file's header, `coordinates` and `image_size` (width, height).

Every instance is kept unless the config says otherwise, and each such rule logs how many it left
out: `exclude_difficult` drops instances flagged difficult (1, or 2 for a patch's cut-off piece);
`max_instances` leaves out (image, class) groups larger than it (a partial list would teach the
model to miss objects). Instances of a class that no DOTA release has are kept and named in a warning.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from PIL import Image
from pydantic import Field

from rsforge.core.configs import DatasetConfig
from rsforge.core.sample import Sample, Turn
from rsforge.datasets.common import Skips, find_image, first_dir, log, no_split, read_lines, split_list
from rsforge.datasets.dota_labels import DOTA_CLASSES, Instance, LabelFile, read_label_file
from rsforge.datasets.prompts import (
    META_COORDINATES,
    META_IMAGE_SIZE,
    Coordinates,
    coordinates_text,
    prompt_for,
)

KNOWN_CLASSES = frozenset(DOTA_CLASSES["2.0"])


def _layout(root: Path, split: str) -> tuple[Path, list[str], Path]:
    """(labelTxt folder, the split's ids, where they came from)."""
    if (root / split / "labelTxt").is_dir():
        labels = root / split / "labelTxt"
        return labels, sorted(p.stem for p in labels.glob("*.txt")), labels
    list_file = split_list(root, split)
    if (root / "labelTxt").is_dir() and list_file is not None:
        return root / "labelTxt", read_lines(list_file), list_file
    lists = [*root.glob("*.txt"), *root.glob("list/*.txt")]
    found = sorted({p.parent.parent.name for p in root.glob("*/labelTxt/")} | {p.stem for p in lists})
    raise no_split(root, split, f"{root / split / 'labelTxt'} and {root / 'labelTxt'} with {split}.txt", found)


class _Tally:
    """What the reader read and left out, over a split, for its closing log lines."""

    def __init__(self) -> None:
        self.instances = self.difficult = self.crowded_groups = self.crowded = 0
        self.unknown: Counter[str] = Counter()

    def report(self, source: Path, max_instances: int | None) -> None:
        if self.difficult:
            log.warning("%s: left out %d difficult instances (exclude_difficult)", source, self.difficult)
        if self.crowded:
            log.warning("%s: left out %d instances in %d (image, class) groups of more than %d (max_instances)",
                        source, self.crowded, self.crowded_groups, max_instances)
        if self.unknown:
            names = ", ".join(f"{name} ({n})" for name, n in sorted(self.unknown.items()))
            log.warning("%s: classes of no DOTA release (v1.0, v1.5, v2.0), kept: %s", source, names)
        log.info("%s: read %d instances", source, self.instances)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image's header, without decoding it; a ValueError says why not (a
    whole DOTA scene can be past PIL's decompression-bomb guard: split it with `rsforge data split-dota`)."""
    try:
        with Image.open(path) as im:
            return im.size
    except Image.DecompressionBombError as exc:
        raise ValueError(f"{path}: too large to read whole ({exc}); split it with `rsforge data split-dota`") from exc
    except OSError as exc:
        raise ValueError(f"{path}: unreadable image ({exc})") from exc


def _samples(stem: str, image: Path, size: tuple[int, int], label: LabelFile, kept: list[Instance],
             coordinates: Coordinates) -> list[Sample]:
    groups: dict[str, list[Instance]] = {}
    for instance in kept:
        groups.setdefault(instance.category, []).append(instance)
    samples = []
    for cls in sorted(groups):
        instances = groups[cls]
        expression = "every " + cls.replace("-", " ").replace("_", " ")
        answer = ", ".join(coordinates_text(i.polygon, size, coordinates) for i in instances)
        samples.append(Sample(
            id=f"{stem}#{cls}",
            images=(str(image),),
            conversation=[Turn("user", prompt_for("oriented_grounding", expression=expression)),
                          Turn("assistant", answer)],
            task="oriented_grounding",
            boxes=[list(i.polygon) for i in instances],
            references=[answer],
            meta={"expression": expression, "category": cls, "difficult": [i.difficult for i in instances],
                  "gsd": label.gsd, "image_source": label.image_source,
                  META_COORDINATES: coordinates, META_IMAGE_SIZE: size},
        ))  # fmt: skip
    return samples


def _keep(label: LabelFile, tally: _Tally, exclude_difficult: bool, max_instances: int | None) -> list[Instance]:
    tally.unknown.update(i.category for i in label.instances if i.category not in KNOWN_CLASSES)
    kept = [i for i in label.instances if not (exclude_difficult and i.difficult)]
    tally.difficult += len(label.instances) - len(kept)
    if max_instances is not None:
        per_class = Counter(i.category for i in kept)
        crowded = {cls for cls, n in per_class.items() if n > max_instances}
        tally.crowded_groups += len(crowded)
        tally.crowded += sum(per_class[cls] for cls in crowded)
        kept = [i for i in kept if i.category not in crowded]
    tally.instances += len(kept)
    return kept


def read_dota(
    root: str | Path,
    split: str,
    *,
    max_instances: int | None = None,
    exclude_difficult: bool = False,
    coordinates: Coordinates = "pixels",
) -> list[Sample]:
    """The oriented_grounding samples of `split` (module docstring). `coordinates` defaults to pixels
    here for callers that write pixel answers (the synthetic generator); `DotaDatasetConfig`, what a
    recipe reads, defaults to norm1000."""
    root = Path(root).resolve()
    labels, ids, source = _layout(root, split)
    images = first_dir(labels.parent, ("images",))
    skips, samples, tally = Skips(source, split), [], _Tally()
    for stem in ids:
        path = labels / f"{stem}.txt"
        if not path.is_file():
            skips.skip(path, f"missing label file ({source})")
            continue
        try:
            label = read_label_file(path)
        except ValueError as exc:
            skips.skip(path, str(exc))
            continue
        for problem in label.problems:
            skips.skip(problem, "line left out", n=0)
        image = find_image(images, stem)
        if image is None:
            skips.skip(images / f"{stem}.png", f"missing image ({path})")
            continue
        try:
            size = image_size(image)
        except ValueError as exc:
            skips.skip(image, str(exc))
            continue
        samples += _samples(stem, image, size, label, _keep(label, tally, exclude_difficult, max_instances),
                            coordinates)
    tally.report(source, max_instances)
    skips.summary(len(ids))
    return samples


class DotaDatasetConfig(DatasetConfig):
    """DOTA oriented boxes (module docstring). `max_instances`: largest (image, class) group kept,
    None for every group; `exclude_difficult`: leave out instances flagged difficult;
    `coordinates`: the units of the answers, norm1000 (0-999 of the image's width and height) or pixels."""

    name: str = "dota"
    root: str
    max_instances: int | None = Field(None, ge=1)
    exclude_difficult: bool = False
    coordinates: Coordinates = "norm1000"


def load_dota(config: DotaDatasetConfig, split: str) -> list[Sample]:
    return read_dota(config.root, split, max_instances=config.max_instances,
                     exclude_difficult=config.exclude_difficult, coordinates=config.coordinates)  # fmt: skip
