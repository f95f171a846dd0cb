"""Multispectral Sentinel-2 datasets as released: OSCD (13-band change masks) and EuroSAT MS (13-band scenes).

OSCD, the Onera Satellite Change Detection dataset (Caye Daudt et al., IGARSS 2018), as distributed
(https://rcdaudt.github.io/oscd/; the layout read by its authors' loader, rcdaudt/
fully_convolutional_change_detection, and by torchgeo's `OSCD`):

    <root>/Onera Satellite Change Detection dataset - Images/
        train.txt, test.txt                      one line, the cities comma-separated
        <city>/imgs_1_rect/B01.tif ... B12.tif, B8A.tif   date 1, one single-band uint16 GeoTIFF per band
        <city>/imgs_2_rect/...                   date 2
        <city>/dates.txt                         "date_1: 20151126" / "date_2: 20170723"
    <root>/Onera Satellite Change Detection dataset - Train Labels/<city>/cm/cm.png (0/255)
                                                                      and cm/<city>-cm.tif (1/2)
    <root>/Onera Satellite Change Detection dataset - Test Labels/<city>/cm/...   (released later)

`root` may also be the "- Images" folder itself (the labels then sit beside it). The `_rect` folders
hold every band already resampled by the release to the 10 m grid (torchgeo concatenates them as
read), so nothing is resampled here; a band of another size is named and the city skipped. The
native-resolution `imgs_1/` `imgs_2/` folders are not read. The label is `cm/cm.png` (0/255) when
present, else `cm/<city>-cm.tif` in OSCD's own convention, 1 = no change and 2 = change
(`OSCD_LABELS`), mapped to 0/255 here; any other value skips the city, named.

A model reads one file per date, so each date's bands are stacked once, in the order of `bands` (by
default the Sentinel-2 numbering, B01..B08, B8A, B09..B12, as torchgeo's OSCD stacks them), into one
(H, W, 13) GeoTIFF under `stack_dir` (default `$XDG_CACHE_HOME/rsforge/oscd/<hash of the folder>`):
training, evaluation, serving and `rsforge detect` then all read the same file with the one scaling of
`rsforge.datasets.images`. The stack keeps the bands' dtype and declares their maxima (MaxSampleValue),
so every value reads exactly as it does from its own band file. A stack older than its bands is rebuilt.

EuroSAT MS (Helber et al., 2019; the `EuroSAT_MS.zip` release): `EuroSAT_MS/<Class>/<Class>_<n>.tif`,
64x64 uint16 GeoTIFFs of 13 bands in EuroSAT's order (`EUROSAT_MS_BANDS`: B8A last, unlike OSCD's
default; a recipe mixing the two sets the OSCD `bands` to that order), read as scene classes with the
splits of `class_folders`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pydantic import Field, field_validator

from rsforge.core.configs import DatasetConfig
from rsforge.core.sample import Sample, Turn
from rsforge.datasets.classification import ClassFoldersDatasetConfig, read_class_folders
from rsforge.datasets.common import Skips, log, no_split
from rsforge.datasets.images import DEFAULT_MAX_PIXELS, ImageError, declared_top, read_bands
from rsforge.datasets.levir import label_problem
from rsforge.datasets.prompts import prompt_for

SENTINEL2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
EUROSAT_MS_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")
OSCD_IMAGES = "Onera Satellite Change Detection dataset - Images"
OSCD_LABELS_DIRS = {"train": "Onera Satellite Change Detection dataset - Train Labels",
                    "test": "Onera Satellite Change Detection dataset - Test Labels"}
OSCD_DATES = ("imgs_1_rect", "imgs_2_rect")
OSCD_LABELS = {1: 0, 2: 255}  # OSCD's <city>-cm.tif: 1 = no change, 2 = change -> the 0/255 of change masks


def default_stack_dir(images: Path) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "rsforge" / "oscd" / hashlib.sha1(str(images).encode()).hexdigest()[:12]


def _write_atomic(path: Path, write) -> None:
    """`write(tmp)` then rename: Ray workers and a second run reading the same folder never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fresh(target: Path, sources: list[Path]) -> bool:
    return target.is_file() and target.stat().st_mtime >= max(p.stat().st_mtime for p in sources)


def stack_bands(files: list[Path], target: Path) -> tuple[int, int]:
    """Write one (H, W, C) GeoTIFF at `target` of the single-band `files`, in order, unless an up-to-date
    one is there; its (H, W). Bands must share size and dtype (ImageError naming the band otherwise)."""
    import tifffile  # only rasters need it

    if _fresh(target, files):
        with tifffile.TiffFile(target) as tif:  # the header alone: the size without decoding the stack
            return tuple(tif.series[0].shape[:2])
    arrays, tops = [], []
    for path in files:
        array, top = read_bands(path, DEFAULT_MAX_PIXELS)
        if array.shape[-1] != 1:
            raise ImageError(f"{path}: {array.shape[-1]} bands; a band file of OSCD holds one")
        if arrays and (array.shape[:2] != arrays[0].shape[:2] or array.dtype != arrays[0].dtype):
            raise ImageError(f"{path}: {array.shape[1]}x{array.shape[0]} {array.dtype}, but {files[0].name} is "
                             f"{arrays[0].shape[1]}x{arrays[0].shape[0]} {arrays[0].dtype}; the bands of a date "
                             "must share one grid and dtype")
        arrays.append(array[..., 0])
        tops.append(float(top[0]))
    stack = np.stack(arrays, axis=-1)
    extratags = []
    if stack.dtype.kind == "u" and stack.dtype.itemsize <= 2:
        extratags = [(281, "H", len(tops), [int(t) for t in tops], True)]  # MaxSampleValue: the bands' own maxima
    elif not np.array_equal(tops, declared_top(stack.dtype, len(tops))):
        raise ImageError(f"{files[0].parent}: {stack.dtype} bands declaring maxima {tops}, which a stack of that "
                         "dtype cannot record")
    _write_atomic(target, lambda tmp: tifffile.imwrite(tmp, stack, photometric="minisblack",
                                                       planarconfig="contig", extratags=extratags))
    return stack.shape[:2]


def _oscd_label(folder: Path, city: str, stacks: Path) -> tuple[Path | None, str | None]:
    """(a 0/255 change mask, None) or (None, why not): `cm/cm.png`, else `cm/<city>-cm.tif` mapped by
    `OSCD_LABELS` into `stacks`."""
    png, tif = folder / city / "cm" / "cm.png", folder / city / "cm" / f"{city}-cm.tif"
    if png.is_file():
        problem = label_problem(png)
        return (None, f"{png}: {problem}") if problem else (png, None)
    if not tif.is_file():
        return None, f"no label ({png} or {tif})"
    target = stacks / city / "cm.png"
    if _fresh(target, [tif]):
        return target, None
    array = read_bands(tif, DEFAULT_MAX_PIXELS)[0][..., 0]
    unknown = sorted(set(np.unique(array).tolist()) - set(OSCD_LABELS))
    if unknown:
        return None, f"{tif}: values {unknown[:10]} outside OSCD's 1 (no change) / 2 (change)"
    mask = np.where(array == 2, OSCD_LABELS[2], OSCD_LABELS[1]).astype(np.uint8)
    _write_atomic(target, lambda tmp: Image.fromarray(mask).save(tmp, format="PNG"))
    return target, None


def _dates(city_dir: Path) -> dict[str, str]:
    path = city_dir / "dates.txt"
    if not path.is_file():
        return {}
    pairs = (line.partition(":") for line in path.read_text(encoding="utf-8").splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, _, value in pairs}


def shown_bands(image: torch.Tensor, bands: Sequence[str] | None = None) -> torch.Tensor:
    """The (3, H, W) a (C, H, W) image is drawn as (report panels): itself for 3 bands; true colour (B04,
    B03, B02) when `bands` (a sample's `meta["bands"]`) names them; else its first three, one band repeated."""
    if image.shape[0] == 3:
        return image
    if bands is not None and {"B04", "B03", "B02"} <= set(bands):
        return image[[list(bands).index(b) for b in ("B04", "B03", "B02")]]
    return image[:3] if image.shape[0] > 3 else image[:1].expand(3, -1, -1)


def read_oscd(root: str | Path, split: str, *, bands: tuple[str, ...] | list[str] = SENTINEL2_BANDS,
              stack_dir: str | Path | None = None) -> list[Sample]:
    """Change-mask samples of OSCD's `split` ("train" or "test": its city lists), each date a stack of
    `bands` (module docstring). A city is skipped, named, when a band file or its label is missing or
    unreadable, when its bands or label differ in size, or when the label is in no known convention."""
    root = Path(root).resolve()
    images = root / OSCD_IMAGES if (root / OSCD_IMAGES).is_dir() else root
    list_file = images / f"{split}.txt"
    if split not in OSCD_LABELS_DIRS or not list_file.is_file():
        found = sorted(s for s in OSCD_LABELS_DIRS if (images / f"{s}.txt").is_file())
        raise no_split(images, split, f"{list_file} (OSCD ships train.txt and test.txt)", found)
    labels = images.parent / OSCD_LABELS_DIRS[split]
    stacks = Path(stack_dir).resolve() if stack_dir is not None else default_stack_dir(images)
    cities = [c.strip() for c in list_file.read_text(encoding="utf-8").replace("\n", ",").split(",") if c.strip()]
    prompt = prompt_for("change_captioning")  # as read_levir_cd: the prompt of change samples without one
    skips, samples = Skips(list_file, split), []
    for city in cities:
        files = [[images / city / date / f"{band}.tif" for band in bands] for date in OSCD_DATES]
        missing = next((p for p in files[0] + files[1] if not p.is_file()), None)
        if missing is not None:
            skips.skip(missing, f"missing band file of {city}")
            continue
        dates = [stacks / city / f"{date}.{'-'.join(bands)}.tif" for date in OSCD_DATES]
        try:
            sizes = {stack_bands(f, d) for f, d in zip(files, dates, strict=True)}
            mask, problem = _oscd_label(labels, city, stacks)
            if mask is not None:
                with Image.open(mask) as label:
                    sizes.add(label.size[::-1])
        except (ValueError, OSError) as exc:  # ImageError, and label_problem's unreadable files
            skips.skip(city, str(exc))
            continue
        if mask is None:
            skips.skip(city, problem)
            continue
        if len(sizes) > 1:
            skips.skip(city, f"dates and label differ in size (H, W): {sorted(sizes)}")
            continue
        samples.append(Sample(
            id=city, images=(str(dates[0]), str(dates[1])), conversation=[Turn("user", prompt)],
            task="change_mask", mask=str(mask),
            meta={"bands": list(bands), "dates": _dates(images / city)},
        ))
    skips.summary(len(cities))
    if samples:
        log.info("%s: %d %s cities stacked under %s", images, len(samples), split, stacks)
    return samples


class OscdDatasetConfig(DatasetConfig):
    """OSCD as released (module docstring): `root` holds the "- Images" and "- Train/Test Labels" folders;
    `bands`: the band files stacked per date, in this order (the encoder's `in_chans` must match their
    count); `stack_dir`: where the stacks are written (default: the user's cache)."""

    name: str = "oscd"
    root: str
    bands: list[str] = Field(default_factory=lambda: list(SENTINEL2_BANDS))
    stack_dir: str | None = None

    @field_validator("bands")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [b for b in value if b not in SENTINEL2_BANDS]
        if unknown or not value or len(set(value)) != len(value):
            raise ValueError(f"bands: {value} must name distinct Sentinel-2 bands of {', '.join(SENTINEL2_BANDS)}"
                             + (f"; unknown: {unknown}" if unknown else ""))
        return value


def load_oscd(config: OscdDatasetConfig, split: str) -> list[Sample]:
    return read_oscd(config.root, split, bands=config.bands, stack_dir=config.stack_dir)


def read_eurosat_ms(root: str | Path, split: str, *, val_frac: float = 0.1, test_frac: float = 0.2,
                    seed: int = 0) -> list[Sample]:
    """EuroSAT MS scenes (module docstring): `class_folders` samples whose `meta["bands"]` names the
    13 bands of each file."""
    samples = read_class_folders(root, split, val_frac=val_frac, test_frac=test_frac, seed=seed)
    for sample in samples:
        sample.meta["bands"] = list(EUROSAT_MS_BANDS)
    return samples


class EurosatMSDatasetConfig(ClassFoldersDatasetConfig):
    """EuroSAT MS (`EuroSAT_MS/<Class>/<Class>_<n>.tif`, 13 bands); splits as `class_folders`."""

    name: str = "eurosat_ms"


def load_eurosat_ms(config: EurosatMSDatasetConfig, split: str) -> list[Sample]:
    return read_eurosat_ms(config.root, split, val_frac=config.val_frac, test_frac=config.test_frac, seed=config.seed)
