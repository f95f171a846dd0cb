"""ChangeChat conversations: the ChangeChat-105k release as DeltaVLM reads it, and rsforge's own
ChangeChat-style files (the synthetic generator's).

**ChangeChat-105k** (DeltaVLM, github.com/hanlinwu/DeltaVLM: readme.md, dataset.py, infer_subtasks.py,
configs/defaults_cap.yaml; annotations from Hugging Face `hlwu/changechat-105k`, images from LEVIR-CC),
read unchanged from `<root>` or `<root>/annotations/`:

- train: `changechat_105k_train.json` (mixed tasks). `changechat_105k_train_loc.json`
  (localisation-augmented, as many entries) replaces it when `file` names it;
- test: all six of `changechat_105k_test.json` (captioning), `changechat_105k_test_binary.json`,
  `_test_count.json`, `_test_loc.json`, `_test_open.json` and `_test_dialog.json` (multi-turn dialogues);
- val: `changechat_105k_val.json`, which DeltaVLM's configs name but the release does not ship.

Two schemas. Instructions: `{"id": 0, "image": ["train/A/train_000001.png", "train/B/train_000001.png"],
"changeflag": 0, "conversations": [{"from": "human", "value": "<image> <image> Please ..."}, {"from":
"gpt", "value": "..."}, ...]}`, human and gpt turns alternating, the `<image>` markers kept in the text.
Captioning (`changechat_105k_test.json`): `{"image_A": ..., "image_B": ..., "captions": [5 references],
"changeflag": 0}`, asked DeltaVLM's fixed captioning prompt. `changeflag` (0: no change) -> `Sample.changed`.

Image paths start at LEVIR-CC's `images/` folder (`images/<split>/{A,B}/<split>_000001.png`):
`images_root`, else `images/` in the annotations folder, else beside it (DeltaVLM's
`dataset/{annotations,images}/`), else the root. The split of an entry is its `split` key, else the file
name's. A conversation gives one sample per answer, the turns before it as history, as DeltaVLM trains
(dataset.py `CaptionDataset`); ids are `<file>:<id>`, `#<k>` added for the k-th answer of a dialogue.

Question types, DeltaVLM's names in `Sample.meta["question_type"]` (metrics group by it), each with the
rsforge task that scores it: caption (change_captioning), binary (binary_change), count (counting), loc
(grid_localization), open (change_open_qa: free text scored by caption metrics, as DeltaVLM scores it).
A typed test file (`_test_binary`, ...) is all of its type, as DeltaVLM evaluates it; in the other files
each question's type is read from DeltaVLM's question wording.

**rsforge ChangeChat-style** files (no `changechat_105k_*.json` in the root): a JSON list of

    {"id": "...", "image": ["A/x.png", "B/x.png"], "task": "...", "split": "...",
     "conversations": [{"from": "human", "value": "<image>\\nwhat changed?"}, {"from": "gpt", "value": "..."}]}

`image` is one or two paths relative to `images_root` (default: the root). A conversation is one sample,
its last answer the reference; roles "human" / "user" and "gpt" / "assistant"; the task is the entry's
`task` key, else "change_qa". Splits: `<root>/<split>.json` when it exists (all of its entries), else one
file (`file`, default `conversations.json`) whose entries carry a `split` key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rsforge.core.configs import DatasetConfig
from rsforge.core.sample import Sample, Turn
from rsforge.datasets.common import SPLITS, Skips, log, no_split, read_json, under

DEFAULT_FILE = "conversations.json"
DEFAULT_TASK = "change_qa"
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}

RELEASE = re.compile(r"changechat_105k_(train|val|test)(?:_(binary|count|loc|open|dialog))?\.json")
RELEASE_FILES = {
    "train": ("changechat_105k_train.json",),
    "val": ("changechat_105k_val.json",),
    "test": tuple(f"changechat_105k_test{t}.json" for t in ("", "_binary", "_count", "_loc", "_open", "_dialog")),
}
TASK_OF_TYPE = {"caption": "change_captioning", "binary": "binary_change", "count": "counting",
                "loc": "grid_localization", "open": "change_open_qa"}  # fmt: skip
# DeltaVLM's captioning prompt (infer_subtasks.py), after the image markers its instructions carry.
CAPTION_PROMPT = "<image> <image> Please briefly describe the changes in these two images."
# The wording of DeltaVLM's question templates (dataset.py comments, scripts/data_processing.ipynb,
# readme.md), first match wins; any other question is open.
QUESTION_TYPES = (
    ("binary", re.compile(r"\byes or no\b")),
    ("loc", re.compile(r"\b3\s*[x×]\s*3\b|\bgrid\b")),
    ("count", re.compile(r"\bhow many\b|\bcount\b|\bnumber of\b")),
    ("caption", re.compile(r"\bdescribe the changes?\b")),
)


# ------------------------------------------------------------------------------ ChangeChat-105k
def _release_folder(root: Path) -> Path | None:
    return next((d for d in (root, root / "annotations") if any(d.glob("changechat_105k_*.json"))), None)


def _release_files(folder: Path, split: str, file: str | None) -> list[Path]:
    if file is not None:
        path = folder / file
        if not path.is_file():
            raise FileNotFoundError(f"ChangeChat-105k file not found: {path}")
        return [path]
    if split not in RELEASE_FILES:
        raise ValueError(f"{folder}: unknown split {split!r}; ChangeChat-105k splits: {', '.join(RELEASE_FILES)}")
    paths = [folder / name for name in RELEASE_FILES[split]]
    found = [p for p in paths if p.is_file()]
    if not found:
        present = sorted({m.group(1) for p in folder.glob("*.json") if (m := RELEASE.fullmatch(p.name))})
        raise no_split(folder, split, ", ".join(p.name for p in paths), present)
    if missing := [p.name for p in paths if not p.is_file()]:
        log.warning("%s: %s split without %s (not found); reading the others", folder, split, ", ".join(missing))
    return found


def _images_root(root: Path, folder: Path, images_root: str | None) -> Path:
    if images_root is not None:
        return under(root, images_root, root)
    return next((d for d in (folder / "images", folder.parent / "images") if d.is_dir()), root)


def question_type(question: str) -> str:
    """DeltaVLM's type of a question, read from the wording of its templates."""
    text = question.lower()
    return next((name for name, pattern in QUESTION_TYPES if pattern.search(text)), "open")


def _pairs(entry: dict[str, Any]) -> list[tuple[str, str]] | str:
    """The (question, answer) pairs of an instruction entry, or why it cannot be used. DeltaVLM pairs
    turns 2k and 2k+1, so they must alternate human, gpt."""
    raw = entry.get("conversations")
    if not isinstance(raw, list) or not raw:
        return "'conversations' is not a non-empty list"
    if len(raw) % 2:
        return f"{len(raw)} turns: the last question has no answer"
    for k, turn in enumerate(raw):
        expected = "human" if k % 2 == 0 else "gpt"
        if not isinstance(turn, dict) or turn.get("from") != expected:
            got = turn.get("from") if isinstance(turn, dict) else turn
            return f"turn {k}: 'from' should be {expected!r}, got {got!r}"
        text = turn.get("value")
        if not isinstance(text, str) or not text.replace("<image>", "").strip():
            return f"turn {k} has no 'value' text"
    return [(raw[k]["value"], raw[k + 1]["value"]) for k in range(0, len(raw), 2)]


def _changed(entry: dict[str, Any]) -> bool | None:
    flag = entry.get("changeflag")
    return bool(flag) if isinstance(flag, (int, float)) else None


def _instruction_samples(entry: dict[str, Any], key: str, typed: str | None, images: tuple[str, ...],
                         pairs: list[tuple[str, str]]) -> list[Sample]:  # fmt: skip
    samples, history = [], []
    for k, (question, answer) in enumerate(pairs):
        kind = typed or question_type(question)
        turns = [*history, Turn("user", question), Turn("assistant", answer)]
        suffix = f"#{k}" if len(pairs) > 1 else ""
        samples.append(Sample(id=f"{key}{suffix}", images=images, conversation=turns,
                              task=TASK_OF_TYPE[kind], references=[answer], changed=_changed(entry),
                              meta={"question_type": kind}))  # fmt: skip
        history = turns
    return samples


def _caption_sample(entry: dict[str, Any], name: str, images: tuple[str, ...]) -> Sample | str:
    captions = entry.get("captions")
    refs = [c.strip() for c in captions if isinstance(c, str) and c.strip()] if isinstance(captions, list) else []
    if not refs:
        return "no non-empty 'captions'"
    return Sample(id=f"{name}:{Path(images[0]).stem}", images=images, task=TASK_OF_TYPE["caption"],
                  conversation=[Turn("user", CAPTION_PROMPT), Turn("assistant", refs[0])], references=refs,
                  changed=_changed(entry), meta={"question_type": "caption"})  # fmt: skip


def _image_names(entry: dict[str, Any]) -> list[Any]:
    if "conversations" in entry:
        image = entry.get("image")
        return image if isinstance(image, list) and len(image) == 2 else []
    return [entry.get("image_A"), entry.get("image_B")]


def _read_release_file(path: Path, split: str, images_root: Path) -> tuple[list[Sample], int]:
    """The samples of `split` in one file, and how many of its entries are of `split`."""
    data = read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: not ChangeChat-105k data (expected a JSON list of entries)")
    file_split, file_type = RELEASE.fullmatch(path.name).groups()
    # A typed test file is all one question type; training files mix them, and dialogues ask several.
    typed = file_type if file_type in TASK_OF_TYPE and file_split != "train" else None
    name = path.stem.removeprefix("changechat_105k_")
    skips, samples, total = Skips(path, split), [], 0
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            total += 1
            skips.skip(f"{path} entry {index}", "not a JSON object")
            continue
        if str(entry.get("split", file_split)) != split:
            continue
        total += 1
        where = f"{path} entry {index} (id {entry.get('id', '?')})"
        names = _image_names(entry)
        if not names or not all(isinstance(n, str) and n for n in names):
            skips.skip(where, "no image pair ('image': [A, B], or 'image_A' and 'image_B')")
            continue
        images = tuple(str(images_root / n) for n in names)
        if missing := [p for p in images if not Path(p).is_file()]:
            skips.skip(missing[0], f"missing image ({where})")
            continue
        if "conversations" in entry:
            pairs = _pairs(entry)
            key = f"{name}:{entry.get('id', index)}"
            made = pairs if isinstance(pairs, str) else _instruction_samples(entry, key, typed, images, pairs)
        elif "captions" in entry:
            one = _caption_sample(entry, name, images)
            made = one if isinstance(one, str) else [one]
        else:
            made = "neither 'conversations' nor 'captions'"
        if isinstance(made, str):
            skips.skip(where, made)
            continue
        samples += made
    skips.summary(total)
    return samples, total


def read_changechat_105k(root: Path, folder: Path, split: str, *, file: str | None = None,
                         images_root: str | None = None) -> list[Sample]:  # fmt: skip
    """The samples of `split` from the ChangeChat-105k annotation files in `folder` (module docstring)."""
    paths = _release_files(folder, split, file)
    images = _images_root(root, folder, images_root)
    samples, total = [], 0
    for path in paths:
        read, entries = _read_release_file(path, split, images)
        samples, total = samples + read, total + entries
    if not samples:
        files = ", ".join(str(p) for p in paths)
        if not total:
            raise ValueError(f"{files}: no {split} entries (the split of an entry is its 'split' key, else "
                             "the file name's)")
        raise ValueError(f"{files}: none of the {total} {split} entries is usable (images looked for under "
                         f"{images}; see the warnings above)")
    return samples


# ------------------------------------------------------------------------ rsforge ChangeChat-style
def _entries(root: Path, split: str, file: str | None) -> tuple[Path, list[Any], bool]:
    """(file, its entries, whether the whole file is the split)."""
    split_file = root / f"{split}.json"
    if file is None and split_file.is_file():
        path, whole = split_file, True
    else:
        path, whole = root / (file or DEFAULT_FILE), False
        if not path.is_file():
            found = sorted(p.stem for p in root.glob("*.json") if p.stem in SPLITS)
            looked_for = f"{split_file}, {path} and ChangeChat-105k's changechat_105k_{split}*.json"
            raise no_split(root, split, looked_for, found)
    data = read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: not ChangeChat-style data (expected a JSON list of conversations)")
    return path, data, whole


def _turns(entry: dict[str, Any]) -> list[Turn] | str:
    """The conversation, or why it cannot be used."""
    raw = entry.get("conversations")
    if not isinstance(raw, list) or not raw:
        return "no 'conversations' list"
    turns = []
    for k, turn in enumerate(raw):
        role = ROLES.get(str(turn.get("from", ""))) if isinstance(turn, dict) else None
        if role is None:
            return f"turn {k} has no known 'from' (human/gpt)"
        text = turn.get("value")
        if not isinstance(text, str) or not text.replace("<image>", "").strip():
            return f"turn {k} is empty"
        turns.append(Turn(role, text))
    if turns[0].role != "user":
        return "the conversation does not start with a human turn"
    if turns[-1].role != "assistant":
        return "the conversation does not end with an answer"
    return turns


def read_changechat(
    root: str | Path, split: str, *, file: str | None = None, images_root: str | Path | None = None
) -> list[Sample]:
    """The samples of `split`: ChangeChat-105k where its files are (a `file` named like them picks that
    one), else rsforge's ChangeChat-style files (module docstring)."""
    root = Path(root).resolve()
    if file is None:
        release = _release_folder(root)
    elif RELEASE.fullmatch(Path(file).name):
        release = next((d for d in (root, root / "annotations") if (d / file).is_file()), root)
    else:
        release = None
    if release is not None:
        return read_changechat_105k(root, release, split, file=file,
                                    images_root=None if images_root is None else str(images_root))  # fmt: skip
    path, entries, whole = _entries(root, split, file)
    if not whole:
        known = sorted(set(SPLITS) | {str(e["split"]) for e in entries if isinstance(e, dict) and e.get("split")})
        if not any(isinstance(e, dict) and "split" in e for e in entries):
            raise ValueError(f"{path}: entries have no 'split' key and there is no {root / (split + '.json')}")
        if split not in known:
            raise ValueError(f"{path}: unknown split {split!r}; known splits: {', '.join(known)}")
    images_root = under(root, None if images_root is None else str(images_root), root)
    skips, samples, total = Skips(path, split), [], 0
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or (not whole and entry.get("split") != split):
            continue
        total += 1
        where = f"{path} entry {index} (id {entry.get('id', '?')})"
        image = entry.get("image")
        names = [image] if isinstance(image, str) else image
        if not isinstance(names, list) or not 1 <= len(names) <= 2 or not all(isinstance(n, str) for n in names):
            skips.skip(where, "'image' must be one path or a list of one or two")
            continue
        images = [images_root / n for n in names]
        if missing := [p for p in images if not p.is_file()]:
            skips.skip(missing[0], f"missing image ({where})")
            continue
        turns = _turns(entry)
        if isinstance(turns, str):
            skips.skip(where, turns)
            continue
        samples.append(
            Sample(
                id=str(entry.get("id", f"{path.stem}:{index}")),
                images=tuple(str(p) for p in images),
                conversation=turns,
                task=str(entry.get("task") or DEFAULT_TASK),
                references=[turns[-1].text],
            )
        )
    skips.summary(total)
    return samples


class ChangeChatDatasetConfig(DatasetConfig):
    """ChangeChat-105k or rsforge ChangeChat-style conversations (module docstring). `file`: one file to
    read instead of the split's (`changechat_105k_train_loc.json`; or the rsforge-style file with `split`
    keys, default `conversations.json`, ignored where `<root>/<split>.json` exists unless given);
    `images_root`: where image paths start (ChangeChat-105k: its `images/` folder; else `root`)."""

    name: str = "changechat"
    root: str
    file: str | None = None
    images_root: str | None = None


def load_changechat(config: ChangeChatDatasetConfig, split: str) -> list[Sample]:
    return read_changechat(config.root, split, file=config.file, images_root=config.images_root)
