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

from rsforge.core.config import DatasetConfig
from rsforge.core.data.common import IMAGE_SUFFIXES, SPLITS, log, read_json, read_lines
from rsforge.core.data.schema import Sample, Turn
from rsforge.core.prompts import prompt_for

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


def read_levir_cd(root: str | Path, split: str) -> list[Sample]:
    """Change-mask samples of `split` from a LEVIR-CD layout: images (A, B), the label as mask, and
    the prompt from `prompts.txt` when there is one, else the change-captioning prompt."""
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

    samples: list[Sample] = []
    skipped = unlabelled = 0
    for name in names:
        before, after, label = base / "A" / name, base / "B" / name, base / "label" / name
        missing = [p for p in (before, after) if not p.is_file()]
        if missing:
            log.warning("missing image %s; skipped", missing[0])
            skipped += 1
            continue
        has_label = label.is_file()
        unlabelled += not has_label
        samples.append(
            Sample(
                id=name,
                images=(str(before), str(after)),
                conversation=[Turn("user", prompts.get(name, default_prompt))],
                task="change_mask",
                mask=str(label) if has_label else None,
            )
        )
    if skipped:
        log.warning(
            "%s: skipped %d of %d %s samples (see the warnings above)", base, skipped, len(names), split
        )
    if unlabelled:
        log.warning("%s: %d %s samples have no label in %s", base, unlabelled, split, base / "label")
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
