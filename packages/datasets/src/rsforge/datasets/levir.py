"""Readers of the public LEVIR layouts, unchanged, for real and synthetic data alike.

- LEVIR-CC: a captions JSON (`LevirCCcaptions.json`: `{"images": [{"filepath", "filename", "split",
  "sentences": [{"raw", ...}], "changeflag"}]}`) with images at `<images_root>/<filepath>/{A,B}/<filename>`;
  a `label/` folder beside `A/` (LEVIR-CD style) supplies change masks.
- LEVIR-CD: `<root>/<split>/{A,B,label}/` (SegChange-R1 adds `<split>/prompts.txt`), or
  `<root>/{A,B,label}/` with the file names of each split in `<root>/list/<split>.txt`; DSIFN-CD, OSCD,
  SZTAKI AirChange, WHU-CD, S2Looking and SYSU-CD in that layout too. Their labels' conventions are read
  or refused by name (`label_problem`), never guessed at.
- LEVIR-MCI: LEVIR-CC's layout with a road / building `label/`, read as a 3-class mask (`read_levir_mci`;
  the encoding is in `rsforge.datasets.semantic_change`).

Problems with single samples (a missing image, no caption) are logged on the "rsforge.data"
logger with the path at fault and the sample is skipped, so one bad file does not stop a run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from rsforge.core.configs import DatasetConfig
from rsforge.core.sample import DEFAULT_MASK_PROMPT, Sample, Turn
from rsforge.datasets.common import IMAGE_SUFFIXES, SPLITS, Skips, log, read_json, read_lines
from rsforge.datasets.prompts import prompt_for
from rsforge.datasets.semantic_change import CLASS_MASK, LEVIR_MCI_CLASSES, MASK_CLASSES, class_label_problem

CAPTION_FILES = ("captions.json", "LevirCCcaptions.json")


def _captions_path(root: Path, captions_file: str | Path | None) -> Path:
    if captions_file is not None:
        path = Path(captions_file)
        # a relative name is looked up in the dataset root first, then the working directory
        if not path.is_absolute() and (root / path).is_file():
            path = root / path
        if not path.is_file():
            raise FileNotFoundError(
                f"LEVIR-CC captions file not found: {captions_file} (dataset root {root})"
            )
        return path
    for name in CAPTION_FILES:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"no LEVIR-CC captions file in {root}: looked for {' or '.join(CAPTION_FILES)}")


def read_levir_cc(
    root: str | Path,
    split: str,
    *,
    captions_file: str | Path | None = None,
    images_root: str | Path | None = None,
    per_reference: bool = False,
    classes: list[dict] | None = None,
) -> list[Sample]:
    """Change-captioning samples of `split` from a LEVIR-CC captions JSON.

    The conversation is the change-captioning prompt and the first reference; `references` holds
    all of them. `per_reference=True` (training) gives one sample per reference, with that
    reference as the answer and id `<filename>#<k>`. A `label/` file is the sample's binary `mask`
    (a label in another convention skips the sample, named, see `label_problem`); with `classes`
    (LEVIR-MCI) it is a K-class mask with that class table instead (`rsforge.datasets.semantic_change`).
    """
    # Absolute paths: samples travel to Ray workers, whose working directory may differ.
    root = Path(root).resolve()
    path = _captions_path(root, captions_file)
    data = read_json(path)
    entries = data.get("images") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f'{path}: not a LEVIR-CC captions file (expected {{"images": [...]}})')
    known = sorted(set(SPLITS) | {e.get("split") for e in entries if isinstance(e, dict) and e.get("split")})
    if split not in known:
        raise ValueError(f"{path}: unknown split {split!r}; known splits: {', '.join(known)}")
    if images_root is None:
        images_root = root / "images" if (root / "images").is_dir() else root
    images_root = Path(images_root).resolve()
    prompt = prompt_for("change_captioning")

    samples: list[Sample] = []
    total = skipped = 0
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.get("split") != split:
            continue
        total += 1
        filename = entry.get("filename")
        if not filename:
            log.warning("%s: entry %d has no 'filename'; skipped", path, index)
            skipped += 1
            continue
        folder = images_root / entry.get("filepath", split)
        before, after = folder / "A" / filename, folder / "B" / filename
        missing = [p for p in (before, after) if not p.is_file()]
        if missing:
            log.warning("missing image %s (%s, %s); skipped", missing[0], path, filename)
            skipped += 1
            continue
        sentences = [s for s in entry.get("sentences", []) if isinstance(s, dict)]
        references = [r for s in sentences if (r := str(s.get("raw", "")).strip())]
        if not references:
            log.warning("%s: %s has no non-empty caption; skipped", path, before)
            skipped += 1
            continue
        label = folder / "label" / filename
        mask, meta = None, {}
        if label.is_file():
            problem = _label_problem(label, classes)
            if problem is not None:
                log.warning("%s: %s; skipped", label, problem)
                skipped += 1
                continue
            if classes is None:
                mask = str(label)
            else:
                meta = {CLASS_MASK: str(label), MASK_CLASSES: classes}
        changed = bool(entry["changeflag"]) if "changeflag" in entry else None
        answers = list(enumerate(references)) if per_reference else [(None, references[0])]
        for k, answer in answers:
            samples.append(
                Sample(
                    id=filename if k is None else f"{filename}#{k}",
                    images=(str(before), str(after)),
                    conversation=[Turn("user", prompt), Turn("assistant", answer)],
                    task="change_captioning",
                    mask=mask,
                    references=list(references),
                    changed=changed,
                    meta=dict(meta),
                )
            )
    if skipped:
        log.warning("%s: skipped %d of %d %s samples (see the warnings above)", path, skipped, total, split)
    return samples


def _read_prompts(path: Path) -> dict[str, str]:
    """SegChange-R1 `prompts.txt`: one `<file name><two spaces><prompt>` per line."""
    prompts = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, text = line.strip().partition("  ")
        if sep and text.strip():
            prompts[name] = text.strip()
    return prompts


# Reading pixels goes through PIL and numpy here, not rsforge.datasets.images: this module stays
# importable without torch (dataset checks and readers run where torch is not installed).
def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header (no decoding); PIL cannot read a header -> ValueError."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot read image header: {exc}") from None


def _values_text(values) -> str:
    return ", ".join(str(v) for v in values[:10]) + (", ..." if len(values) > 10 else "")


# What a binary change label holds in each public release, and why one is refused (not guessed at):
# - 0/255: LEVIR-CD, DSIFN-CD, SZTAKI AirChange (`gt.bmp`), WHU-CD, SYSU-CD, S2Looking (`label/`); read.
# - 0/1: copies re-encoded so (and 1-bit images); read.
# - 1/2: raw OSCD (`cm/<city>-cm.tif`: 1 = no change, 2 = change); refused: a tile holding only 1 would
#   read as "all changed" under 0/1, so the values alone cannot tell the conventions apart.
# - 0/128/255: LEVIR-MCI (Change-Agent: 128 = road, 255 = building); refused, it has its own reader.
# - 0-6: SECOND's index-encoded land cover (Bi-SRNet's `label1/`, `label2/`); refused, its own reader.
# - colours (R, G, B not equal): RGB-coded semantic labels (SECOND's `label1/`, `label2/`); refused.
def label_problem(path: Path) -> str | None:
    """Why a binary change label cannot be read (the convention it looks like, named), or None.
    Unreadable files raise OSError / ValueError."""
    with Image.open(path) as img:
        if img.mode in ("RGB", "RGBA"):
            rgb = np.asarray(img.convert("RGB"))
            if not ((rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])).all():
                colours = [tuple(int(x) for x in c) for c in np.unique(rgb.reshape(-1, 3), axis=0)]
                return (f"RGB-coded label (colours {_values_text(colours)}): a change mask must be grey 0/255 or "
                        "0/1; SECOND's label1/ label2/ are land-cover maps (read them with the second reader); "
                        "S2Looking: read its label/ folder")
            values = np.unique(rgb[..., 0]).tolist()
        else:
            # as load_mask reads them: a palette image's indices are its labels, whatever their colours
            keep = img.mode in ("P", "1", "L", "I", "I;16", "I;16B", "I;16L", "F")
            values = np.unique(np.asarray(img if keep else img.convert("L"))).tolist()
    found = set(values)
    if found <= {0, 255} or found <= {0, 1}:
        return None
    shown = "{" + _values_text(values) + "}"
    if found <= {1, 2} and 2 in found:
        return (f"label values {shown}: this looks like raw OSCD (1 = no change, 2 = change); "
                "use OSCD's cm/cm.png (0/255) or map 1 to 0 and 2 to 255")
    if found <= {0, 128, 255} and 128 in found and len(found) > 1:
        return (f"label values {shown}: this looks like LEVIR-MCI (128 = road, 255 = building); "
                "read it with the levir_mci reader, which keeps the classes")
    if found <= set(range(7)) and len(found) > 1:
        return (f"label values {shown}: this looks like SECOND's index-encoded land cover "
                "(0 = no change, 1-6 classes); read it with the second reader")
    return f"label must hold only 0/255 or 0/1, found values {_values_text(values)}"


def _label_problem(label: Path, classes: list[dict] | None) -> str | None:
    """Why a label cannot be read: as a binary change mask, or against its class table `classes`."""
    try:
        return label_problem(label) if classes is None else class_label_problem(label, classes)
    except (ValueError, OSError) as exc:
        return f"cannot read label: {exc}"


def _pair_problem(before: Path, after: Path, label: Path | None) -> str | None:
    """Why a LEVIR-CD pair cannot be used (sizes differ, unreadable, label not binary), or None."""
    paths = [before, after] + ([label] if label is not None else [])
    try:
        sizes = [_image_size(p) for p in paths]
        if len(set(sizes)) > 1:
            shown = ", ".join(f"{sub} {w}x{h}" for sub, (w, h) in zip(("A", "B", "label"), sizes, strict=False))
            return f"sizes differ ({shown})"
        # the label is decoded here so that one in another convention is refused now, not mid-training
        return label_problem(label) if label is not None else None
    except (ValueError, OSError) as exc:
        return str(exc)


def read_levir_cd(root: str | Path, split: str) -> list[Sample]:
    """Change-mask samples of `split` from a LEVIR-CD layout: images (A, B), the label as mask, and
    the prompt from `prompts.txt` when there is one, else `DEFAULT_MASK_PROMPT` (a text-guided head's default).

    A pair is skipped, with a warning naming the file, when an image is missing, when the split has a
    `label/` folder but not this pair's label, when A, B and label differ in size, or when the label
    holds anything but 0/255 or 0/1; the count of skipped pairs is logged at the end. A split without
    a `label/` folder (images to predict) gives samples without masks.
    """
    root = Path(root).resolve()
    list_file = root / "list" / f"{split}.txt"
    if (root / split / "A").is_dir():
        base = root / split
    elif (root / "A").is_dir() and list_file.is_file():
        base = root
    else:
        found = sorted(
            {p.parent.name for p in root.glob("*/A") if p.is_dir()}
            | {p.stem for p in root.glob("list/*.txt")}
        )
        raise ValueError(
            f"{root}: no LEVIR-CD split {split!r} (looked for {root / split / 'A'} and {list_file}); "
            f"splits found: {', '.join(found) or 'none'}"
        )
    if list_file.is_file():
        names = read_lines(list_file)
    else:
        names = sorted(p.name for p in (base / "A").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    prompts = _read_prompts(base / "prompts.txt") if (base / "prompts.txt").is_file() else {}
    default_prompt = DEFAULT_MASK_PROMPT  # what a text-guided head is asked at inference when no prompt is given
    labelled = (base / "label").is_dir()

    samples: list[Sample] = []
    skips = Skips(base, split)
    for name in names:
        before, after, label = base / "A" / name, base / "B" / name, base / "label" / name
        missing = [p for p in (before, after) + ((label,) if labelled else ()) if not p.is_file()]
        if missing:
            skips.skip(missing[0], f"missing ({name} has no {missing[0].parent.name} file)")
            continue
        problem = _pair_problem(before, after, label if labelled else None)
        if problem is not None:
            skips.skip(name, problem)
            continue
        samples.append(
            Sample(
                id=name,
                images=(str(before), str(after)),
                conversation=[Turn("user", prompts.get(name, default_prompt))],
                task="change_mask",
                mask=str(label) if labelled else None,
            )
        )
    skips.summary(len(names))
    if not labelled:
        log.warning("%s: %s has no label folder %s; samples have no masks", base, split, base / "label")
    return samples


# ------------------------------------------------------------------------------ dataset registry
class LevirCCDatasetConfig(DatasetConfig):
    """LEVIR-CC on disk. `captions_file` defaults to `captions.json` / `LevirCCcaptions.json` in
    `root`; `images_root` to `root/images` when it exists, else `root`."""

    name: str = "levir_cc"
    root: str
    captions_file: str | None = None
    images_root: str | None = None


def load_levir_cc(config: LevirCCDatasetConfig, split: str) -> list[Sample]:
    """Samples of `split`; training gets one sample per reference caption."""
    return read_levir_cc(
        config.root,
        split,
        captions_file=config.captions_file,
        images_root=config.images_root,
        per_reference=split == "train",
    )


class LevirCDDatasetConfig(DatasetConfig):
    """LEVIR-CD on disk, as released (`train/ val/ test/`, each with `A/ B/ label/`) or cropped with
    `list/<split>.txt` (BIT / ChangeFormer's layout); DSIFN-CD, OSCD and SZTAKI AirChange in that layout too."""

    name: str = "levir_cd"
    root: str


def load_levir_cd(config: LevirCDDatasetConfig, split: str) -> list[Sample]:
    return read_levir_cd(config.root, split)


class LevirMCIDatasetConfig(LevirCCDatasetConfig):
    """LEVIR-MCI on disk, as released with Change-Agent: `LevirCCcaptions.json` and
    `images/<split>/{A,B,label}/` (`rsforge.datasets.semantic_change` has the label encoding)."""

    name: str = "levir_mci"


def load_levir_mci(config: LevirMCIDatasetConfig, split: str) -> list[Sample]:
    """LEVIR-CC's samples with the road / building label as a 3-class mask; training gets one sample
    per reference caption, as LEVIR-CC's does."""
    return read_levir_cc(config.root, split, captions_file=config.captions_file, images_root=config.images_root,
                         per_reference=split == "train", classes=LEVIR_MCI_CLASSES)
