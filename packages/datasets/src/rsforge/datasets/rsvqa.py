"""RSVQA (LR and HR layouts), unchanged:

    <root>/<prefix>_<split>_questions.json
        {"questions": [{"id", "img_id", "question", "type", "answers_ids", "active"}]}
    <root>/<prefix>_<split>_answers.json    {"answers": [{"id", "question_id", "answer", "active"}]}
    <root>/<prefix>_<split>_images.json     {"images": [{"id", "active", ...}]}   (optional)
    <root>/Images_LR/<img_id>.tif           (or Images_HR/, Data/, images/; other image suffixes too)

e.g. `LR_split_train_questions.json`, `USGS_split_test_phili_questions.json` (split "test_phili").
`prefix` picks one set where a folder holds several. Inactive questions and images are left out, as
in the RSVQA benchmarks. The question is the prompt; the question type (presence, comparison,
count, rural_urban, area) goes to `meta["question_type"]` for accuracy per type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rsforge.core.configs import DatasetConfig
from rsforge.core.sample import Sample, Turn
from rsforge.datasets.common import IMAGE_SUFFIXES, Skips, find_image, first_dir, read_json, under
from rsforge.datasets.prompts import prompt_for

IMAGE_DIRS = ("Images_LR", "Images_HR", "Data", "images")


def _split_file(root: Path, split: str, kind: str, prefix: str | None) -> Path | None:
    pattern = f"{prefix}_{split}_{kind}.json" if prefix else f"*_{split}_{kind}.json"
    matches = sorted(root.glob(pattern))
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches)
        raise ValueError(f"{root}: several RSVQA sets match {pattern} ({names}); set prefix")
    return matches[0] if matches else None


def _records(path: Path, key: str) -> list[dict[str, Any]]:
    data = read_json(path)
    records = data.get(key) if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise ValueError(f'{path}: not an RSVQA file (expected {{"{key}": [...]}})')
    return [r for r in records if isinstance(r, dict)]


def read_rsvqa(
    root: str | Path,
    split: str,
    *,
    prefix: str | None = None,
    images_dir: str | None = None,
    image_suffix: str | None = None,
) -> list[Sample]:
    """VQA samples of `split`; `image_suffix` (e.g. ".tif") is found per image when not given."""
    root = Path(root).resolve()
    questions_path = _split_file(root, split, "questions", prefix)
    if questions_path is None:
        found = sorted(p.name.removesuffix("_questions.json").rpartition("_split_")[2]
                       for p in root.glob("*_questions.json"))
        raise ValueError(f"{root}: no RSVQA split {split!r} (no *_{split}_questions.json); "
                         f"splits found: {', '.join(found) or 'none'}")
    answers_path = questions_path.with_name(questions_path.name.replace("_questions.json", "_answers.json"))
    if not answers_path.is_file():
        raise FileNotFoundError(f"RSVQA answers file not found: {answers_path} (beside {questions_path.name})")
    answers = {a.get("id"): a for a in _records(answers_path, "answers") if a.get("active", True)}
    images_path = questions_path.with_name(questions_path.name.replace("_questions.json", "_images.json"))
    inactive = set()
    if images_path.is_file():
        inactive = {i.get("id") for i in _records(images_path, "images") if not i.get("active", True)}
    folder = under(root, images_dir, first_dir(root, IMAGE_DIRS))
    suffixes = (image_suffix,) if image_suffix else (".tif", *IMAGE_SUFFIXES)
    found_images: dict[Any, Path | None] = {}

    skips, samples, total = Skips(questions_path, split), [], 0
    for q in _records(questions_path, "questions"):
        if not q.get("active", True) or q.get("img_id") in inactive:
            continue
        total += 1
        where = f"{questions_path} question {q.get('id', '?')}"
        question = str(q.get("question", "")).strip()
        if not question:
            skips.skip(where, "empty question")
            continue
        refs = [str(answers[i]["answer"]).strip() for i in q.get("answers_ids", []) if i in answers]
        refs = [r for r in refs if r]
        if not refs:
            skips.skip(where, f"no non-empty answer in {answers_path.name}")
            continue
        img_id = q.get("img_id")
        if img_id not in found_images:
            found_images[img_id] = find_image(folder, str(img_id), suffixes)
        image = found_images[img_id]
        if image is None:
            skips.skip(folder / f"{img_id}{suffixes[0]}", f"missing image ({where})")
            continue
        samples.append(
            Sample(
                id=str(q.get("id")),
                images=(str(image),),
                conversation=[Turn("user", prompt_for("vqa", question=question)), Turn("assistant", refs[0])],
                task="vqa",
                references=refs,
                meta={"question_type": str(q["type"])} if q.get("type") else {},
            )
        )
    skips.summary(total)
    return samples


class RsvqaDatasetConfig(DatasetConfig):
    """RSVQA LR / HR (module docstring). `prefix`: e.g. "LR_split" where several sets share a
    folder; `images_dir`: relative to `root` (default the first of Images_LR, Images_HR, Data,
    images); `image_suffix`: e.g. ".tif" (default: found per image)."""

    name: str = "rsvqa"
    root: str
    prefix: str | None = None
    images_dir: str | None = None
    image_suffix: str | None = None


def load_rsvqa(config: RsvqaDatasetConfig, split: str) -> list[Sample]:
    return read_rsvqa(
        config.root, split, prefix=config.prefix, images_dir=config.images_dir, image_suffix=config.image_suffix
    )
