"""Single-image captions in the two common layouts of RSICD, UCM-Captions, Sydney-Captions and
VRSBench-style sets, several references per image:

- COCO: `{"images": [{"id", "file_name", "split"?}], "annotations": [{"image_id", "caption"}]}`;
- Karpathy (`dataset_rsicd.json`, `dataset.json`): `{"images": [{"filename", "filepath"?, "split",
  "sentences": [{"raw"}]}]}` ("restval" counts as train, as in Karpathy's own splits).

Splits: a file per split (`annotations` with a `{split}` field, e.g. `captions_{split}.json`, or
found as `<split>.json`, `captions_<split>.json`, `annotations/captions_<split>.json`), else one
file (`annotations`, or the first of `dataset_rsicd.json`, `dataset.json`, `captions.json`,
`annotations.json`) whose images carry a `split` field. Images are at
`<images_root>/[<filepath>/]<file name>`; `images_root` defaults to `root/images` when it exists,
else `root`.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from rsforge.core.configs import DatasetConfig
from rsforge.core.sample import Sample, Turn
from rsforge.datasets.common import SPLITS, Skips, read_json, under
from rsforge.datasets.prompts import prompt_for

SPLIT_FILES = ("{split}.json", "captions_{split}.json", "annotations/captions_{split}.json")
SINGLE_FILES = ("dataset_rsicd.json", "dataset.json", "captions.json", "annotations.json")
SPLIT_ALIASES = {"restval": "train"}


def _annotation_file(root: Path, split: str, annotations: str | None) -> tuple[Path, bool]:
    """(file, whether the whole file is the split)."""
    if annotations is not None:
        path = root / annotations.format(split=split)
        if not path.is_file():
            raise FileNotFoundError(f"captions file not found: {path}")
        return path, "{split}" in annotations
    for pattern in SPLIT_FILES:
        if (path := root / pattern.format(split=split)).is_file():
            return path, True
    for name in SINGLE_FILES:
        if (path := root / name).is_file():
            return path, False
    looked = ", ".join([p.format(split=split) for p in SPLIT_FILES] + list(SINGLE_FILES))
    raise FileNotFoundError(f"no captions file in {root}: looked for {looked}")


def _captions(path: Path, data: Any) -> list[tuple[dict[str, Any], str, list[str]]]:
    """(image entry, relative image path, its captions) per image, either layout."""
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise ValueError(f'{path}: not a captions file (expected {{"images": [...], ...}})')
    if "annotations" in data:  # COCO
        by_image: dict[Any, list[str]] = defaultdict(list)
        for a in data["annotations"]:
            if isinstance(a, dict):
                by_image[a.get("image_id")].append(str(a.get("caption", "")).strip())
        return [(e, str(e.get("file_name", "")), by_image.get(e.get("id"), [])) for e in images if isinstance(e, dict)]
    out = []
    for e in images:
        if isinstance(e, dict):
            name = str(Path(e.get("filepath", "")) / e["filename"]) if e.get("filename") else ""
            sentences = [s for s in e.get("sentences", []) if isinstance(s, dict)]
            out.append((e, name, [str(s.get("raw", "")).strip() for s in sentences]))
    return out


def read_coco_captions(
    root: str | Path,
    split: str,
    *,
    annotations: str | None = None,
    images_root: str | None = None,
    per_reference: bool = False,
) -> list[Sample]:
    """Captioning samples of `split`: the captioning prompt and the first reference; `references`
    holds all. `per_reference=True` (training) gives one sample per reference, id `<image>#<k>`."""
    root = Path(root).resolve()
    path, whole = _annotation_file(root, split, annotations)
    entries = _captions(path, read_json(path))
    if not whole:
        splits = {SPLIT_ALIASES.get(e.get("split"), e.get("split")) for e, _, _ in entries}
        if None in splits:
            raise ValueError(f"{path}: images without a 'split' field, and no file per split was found")
        if split not in (known := sorted(set(SPLITS) | splits)):
            raise ValueError(f"{path}: unknown split {split!r}; known splits: {', '.join(known)}")
    images_root_path = under(root, images_root, root / "images" if (root / "images").is_dir() else root)
    prompt = prompt_for("captioning")
    skips, samples, total = Skips(path, split), [], 0
    for index, (entry, name, captions) in enumerate(entries):
        if not whole and SPLIT_ALIASES.get(entry.get("split"), entry.get("split")) != split:
            continue
        total += 1
        if not name:
            skips.skip(path, f"image {index} has no file name")
            continue
        image = images_root_path / name
        if not image.is_file():
            skips.skip(image, f"missing image ({path})")
            continue
        references = [c for c in captions if c]
        if not references:
            skips.skip(image, f"no non-empty caption ({path})")
            continue
        answers = list(enumerate(references)) if per_reference else [(None, references[0])]
        for k, answer in answers:
            samples.append(
                Sample(
                    id=name if k is None else f"{name}#{k}",
                    images=(str(image),),
                    conversation=[Turn("user", prompt), Turn("assistant", answer)],
                    task="captioning",
                    references=list(references),
                )
            )
    skips.summary(total)
    return samples


class CocoCaptionsDatasetConfig(DatasetConfig):
    """Captions in COCO or Karpathy layout (module docstring). `annotations`: the captions file
    relative to `root`, may contain `{split}`; `images_root`: relative to `root`."""

    name: str = "coco_captions"
    root: str
    annotations: str | None = None
    images_root: str | None = None


def load_coco_captions(config: CocoCaptionsDatasetConfig, split: str) -> list[Sample]:
    """Samples of `split`; training gets one sample per reference caption."""
    return read_coco_captions(
        config.root,
        split,
        annotations=config.annotations,
        images_root=config.images_root,
        per_reference=split == "train",
    )
