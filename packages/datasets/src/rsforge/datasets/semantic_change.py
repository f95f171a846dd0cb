"""K-class (semantic) change masks: the class tables of the public releases, the check of a label against
its table, and the SECOND reader (LEVIR-MCI's, a LEVIR-CC layout, is `rsforge.datasets.levir.read_levir_mci`).

A sample's K-class mask travels in its `meta`: `meta["class_mask"]` the label file, `meta["mask_classes"]`
its class table, one `{"name", "color": [r, g, b]}` (RGB-coded labels) or `{"name", "value"}` per class,
the class id being its position; id 0 is "no change". `Sample.mask` stays the binary change mask (None
here), so code that reads binary masks never meets class ids; `collate` reads the K-class mask with
`load_mask(..., classes=...)` into `Batch.masks` as int64 ids.

Releases and their encodings:

- LEVIR-MCI (Liu et al., Change-Agent, github Chen-Yang-Liu/Change-Agent; the data on Hugging Face
  lcybuaa/LEVIR-MCI): `LevirCCcaptions.json` + `images/<split>/{A,B,label}/<split>_<n>.png`; the label is
  an RGB PNG of which the loader reads the first band, 0 = no change, 128 = road, 255 = building
  (`Multi_change/data/LEVIR_MCI.py`: `seg_label[seg_label==255] = 2; seg_label[seg_label==128] = 1`;
  `Multi_change/predict.py` names 1 road and 2 building).
- SECOND (Yang et al., "Asymmetric Siamese Networks for Semantic Change Detection in Aerial Images",
  IEEE TGRS, arXiv 2010.05687): `<split>/{im1,im2,label1,label2}/<name>.png`, 512x512; `label1/`,
  `label2/` the land cover of date 1 and 2 on the changed pixels, RGB-coded, white = no change. Split
  folders are read as named (SCanNet's `datasets/SECOND/split_train_val.py` splits the released train/
  into train/ and val/ and tests on the released held-out folder). Colours and class order as in
  the loaders of Bi-SRNet and SCanNet (github ggsDing/Bi-SRNet and ggsDing/SCanNet, `datasets/RS_ST.py`:
  `ST_COLORMAP`, `ST_CLASSES`). Their prepared copies hold index-encoded `label1/`, `label2/` (0-6) beside
  `label1_rgb/`, `label2_rgb/`; both encodings are read (`load_mask`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from rsforge.core.configs import DatasetConfig
from rsforge.core.sample import Sample, Turn
from rsforge.datasets.common import Skips, no_split

CLASS_MASK, MASK_CLASSES = "class_mask", "mask_classes"

LEVIR_MCI_CLASSES: list[dict] = [
    {"name": "no change", "value": 0},
    {"name": "road", "value": 128},
    {"name": "building", "value": 255},
]
SECOND_CLASSES: list[dict] = [
    {"name": "no change", "color": [255, 255, 255]},
    {"name": "water", "color": [0, 0, 255]},
    {"name": "ground", "color": [128, 128, 128]},
    {"name": "low vegetation", "color": [0, 128, 0]},
    {"name": "tree", "color": [0, 255, 0]},
    {"name": "building", "color": [128, 0, 0]},
    {"name": "sports field", "color": [255, 0, 0]},
]

Date = Literal["before", "after"]
# A head that reads the prompt (text-guided) tells the two dates' masks of one pair apart by it.
SECOND_PROMPTS: dict[str, str] = {
    "before": "label the land cover of the changed areas in the first image",
    "after": "label the land cover of the changed areas in the second image",
}
_SECOND_FOLDERS = ("im1", "im2", "label1", "label2")


def _distinct(img: Image.Image, by_color: bool) -> tuple[list, bool]:
    """The distinct codes of a label as `load_mask` matches them against a table, and whether they are
    colours (see `_class_ids` in `rsforge.datasets.images`, which this mirrors without importing torch)."""
    single = img.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F")
    if by_color and not single:
        rgb = np.asarray(img.convert("RGB")).reshape(-1, 3)
        return [tuple(int(x) for x in c) for c in np.unique(rgb, axis=0)], True
    array = np.asarray(img if single or img.mode == "P" else img.convert("RGB"))
    return np.unique(array[..., 0] if array.ndim == 3 else array).tolist(), False


def class_label_problem(path: Path, classes: list[dict]) -> str | None:
    """Why a K-class label does not match its class table (the values it has that the table lacks), or
    None. Unreadable files raise OSError / ValueError."""
    by_color = all("color" in c for c in classes)
    with Image.open(path) as img:
        found, coloured = _distinct(img, by_color)
    if coloured:
        known = {tuple(c["color"]) for c in classes}
    else:
        known = set(range(len(classes))) if by_color else {c["value"] for c in classes}
    unknown = [v for v in found if v not in known]
    if not unknown:
        return None
    table = ", ".join(f"{c['name']} {tuple(c['color']) if coloured else c.get('value', i)}"
                      for i, c in enumerate(classes))
    shown = ", ".join(map(str, unknown[:10])) + (", ..." if len(unknown) > 10 else "")
    return f"label values not in its class table: {shown} (the table: {table})"


def _pair_problem(paths: list[Path], classes: list[dict]) -> str | None:
    """Why a SECOND pair cannot be used (a missing or unreadable file, sizes differ, a label off its
    table), or None."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        return f"missing ({missing[0].name} has no {missing[0].parent.name} file)"
    try:
        sizes = []
        for path in paths:
            with Image.open(path) as img:
                sizes.append(img.size)
        if len(set(sizes)) > 1:
            shown = ", ".join(f"{p.parent.name} {w}x{h}" for p, (w, h) in zip(paths, sizes, strict=True))
            return f"sizes differ ({shown})"
        for label in paths[2:]:
            problem = class_label_problem(label, classes)
            if problem is not None:
                return f"{label.parent.name}: {problem}"
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        return f"cannot read: {exc}"
    return None


def read_second(root: str | Path, split: str, dates: tuple[Date, ...] = ("before", "after")) -> list[Sample]:
    """SECOND samples of `split` (`<root>/<split>/{im1,im2,label1,label2}/`): for each pair one sample per
    date in `dates`, id `<name>#<date>`, the two images, the date's prompt (`SECOND_PROMPTS`) and that
    date's land-cover label as the K-class mask (7 classes, `SECOND_CLASSES`; `meta["date"]` says which).

    Both dates' samples are what SECOND's SeK is scored over (Bi-SRNet's evaluation counts the pixels of
    label1 and label2 alike). A pair with a missing or unreadable file, differing sizes or a label value
    outside the table is skipped with a warning naming it."""
    root = Path(root).resolve()
    base = root / split
    if not (base / "im1").is_dir():
        found = sorted(p.parent.name for p in root.glob("*/im1") if p.is_dir())
        raise no_split(root, split, str(base / "im1"), found)
    unknown = [d for d in dates if d not in SECOND_PROMPTS]
    if unknown or not dates:
        raise ValueError(f"SECOND dates must be some of {', '.join(SECOND_PROMPTS)}, got {list(dates)}")
    names = sorted(p.name for p in (base / "im1").iterdir() if p.suffix.lower() == ".png")
    samples: list[Sample] = []
    skips = Skips(base, split)
    for name in names:
        paths = [base / folder / name for folder in _SECOND_FOLDERS]
        problem = _pair_problem(paths, SECOND_CLASSES)
        if problem is not None:
            skips.skip(base / "im1" / name, problem)
            continue
        for date in dates:
            label = paths[2] if date == "before" else paths[3]
            samples.append(Sample(
                id=f"{name}#{date}",
                images=(str(paths[0]), str(paths[1])),
                conversation=[Turn("user", SECOND_PROMPTS[date])],
                task="change_mask",
                meta={CLASS_MASK: str(label), MASK_CLASSES: SECOND_CLASSES, "date": date},
            ))
    skips.summary(len(names))
    return samples


class SecondDatasetConfig(DatasetConfig):
    """SECOND on disk: `<root>/<split>/{im1,im2,label1,label2}/`. `dates`: whose land cover the samples
    ask for ("before": label1, "after": label2)."""

    name: str = "second"
    root: str
    dates: tuple[Date, ...] = ("before", "after")


def load_second(config: SecondDatasetConfig, split: str) -> list[Sample]:
    return read_second(config.root, split, config.dates)
