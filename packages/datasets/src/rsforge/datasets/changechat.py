"""ChangeChat-style instruction data: a JSON list of entries

    {"id": "...", "image": ["A/x.png", "B/x.png"], "task": "...", "split": "...",
     "conversations": [{"from": "human", "value": "<image>\\nwhat changed?"}, {"from": "gpt", "value": "..."}]}

`image` is a list of one or two paths (a single string is one image), relative to `images_root`
(default: the dataset root). Multi-turn conversations are kept as turns, and `<image>` placeholders
stay in the text: the decoder puts the visual tokens there. Roles: "human" / "user" and "gpt" /
"assistant". The task is the entry's `task` key, else "change_qa"; the last turn, an answer, is the
reference.

Splits: `<root>/<split>.json` when it exists (all of its entries, `split` keys ignored); else one
file (`file`, default `conversations.json` in the root) whose entries carry a `split` key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rsforge.core.configs import DatasetConfig
from rsforge.core.sample import Sample, Turn
from rsforge.datasets.common import SPLITS, Skips, no_split, read_json, under

DEFAULT_FILE = "conversations.json"
DEFAULT_TASK = "change_qa"
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


def _entries(root: Path, split: str, file: str | None) -> tuple[Path, list[Any], bool]:
    """(file, its entries, whether the whole file is the split)."""
    split_file = root / f"{split}.json"
    if file is None and split_file.is_file():
        path, whole = split_file, True
    else:
        path, whole = root / (file or DEFAULT_FILE), False
        if not path.is_file():
            found = sorted(p.stem for p in root.glob("*.json") if p.stem in SPLITS)
            raise no_split(root, split, f"{split_file} and {path}", found)
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
    root = Path(root).resolve()
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
    """ChangeChat-style conversations JSON (module docstring). `file`: the one file with `split` keys
    (default `conversations.json`; ignored where `<root>/<split>.json` exists unless given);
    `images_root`: where image paths start (default `root`)."""

    name: str = "changechat"
    root: str
    file: str | None = None
    images_root: str | None = None


def load_changechat(config: ChangeChatDatasetConfig, split: str) -> list[Sample]:
    return read_changechat(config.root, split, file=config.file, images_root=config.images_root)
