"""Readers of the public LEVIR layouts, unchanged, for real and synthetic data alike.

- LEVIR-CC: a captions JSON (`LevirCCcaptions.json`: `{"images": [{"filepath", "filename", "split",
  "sentences": [{"raw", ...}], "changeflag"}]}`) with images at `<images_root>/<filepath>/{A,B}/<filename>`;
  a `label/` folder beside `A/` (LEVIR-CD style) supplies change masks.
- LEVIR-CD: `<root>/<split>/{A,B,label}/` (SegChange-R1 adds `<split>/prompts.txt`), or
  `<root>/{A,B,label}/` with the file names of each split in `<root>/list/<split>.txt`.

Problems with single samples (a missing image, no caption) are logged on the "rsforge.data"
logger with the path at fault and the sample is skipped, so one bad file does not stop a run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from rsforge.core.configs import DatasetConfig
from rsforge.core.sample import Sample, Turn
from rsforge.datasets.common import IMAGE_SUFFIXES, SPLITS, Skips, log, read_json, read_lines
from rsforge.datasets.prompts import prompt_for

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
) -> list[Sample]:
    """Change-captioning samples of `split` from a LEVIR-CC captions JSON.

    The conversation is the change-captioning prompt and the first reference; `references` holds
    all of them. `per_reference=True` (training) gives one sample per reference, with that
    reference as the answer and id `<filename>#<k>`.
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
        mask = str(label) if label.is_file() else None
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


def _label_values(path: Path) -> list[int]:
    """The distinct values of a label (palette images: their indices), as `load_mask` reads it."""
    with Image.open(path) as img:
        keep = img.mode in ("P", "1", "L", "I", "I;16", "I;16B", "I;16L", "F")
        return np.unique(np.asarray(img if keep else img.convert("L"))).tolist()


def _pair_problem(before: Path, after: Path, label: Path | None) -> str | None:
    """Why a LEVIR-CD pair cannot be used (sizes differ, unreadable, label not binary), or None."""
    paths = [before, after] + ([label] if label is not None else [])
    try:
        sizes = [_image_size(p) for p in paths]
        if len(set(sizes)) > 1:
            shown = ", ".join(f"{sub} {w}x{h}" for sub, (w, h) in zip(("A", "B", "label"), sizes, strict=False))
            return f"sizes differ ({shown})"
        # the label is decoded here so that one that is not 0/255 or 0/1 is refused now, not mid-training
        values = _label_values(label) if label is not None else []
    except (ValueError, OSError) as exc:
        return str(exc)
    if not (set(values) <= {0, 255} or set(values) <= {0, 1}):
        shown = ", ".join(str(v) for v in values[:10]) + (", ..." if len(values) > 10 else "")
        return f"label must hold only 0/255 or 0/1, found values {shown}"
    return None


def read_levir_cd(root: str | Path, split: str) -> list[Sample]:
    """Change-mask samples of `split` from a LEVIR-CD layout: images (A, B), the label as mask, and
    the prompt from `prompts.txt` when there is one, else the change-captioning prompt.

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
    default_prompt = prompt_for("change_captioning")
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
