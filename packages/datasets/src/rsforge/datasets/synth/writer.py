"""Writing a synthetic dataset in the public layouts, atomically, with the same bytes for the same seed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from rsforge.core.atomic import atomic_dir
from rsforge.datasets.common import SPLITS
from rsforge.datasets.prompts import prompt_for
from rsforge.datasets.synth.drawing import _save_png
from rsforge.datasets.synth.pairs import _make_pair, _Pair
from rsforge.datasets.synth.single_image import _SingleImages

SYNTH_VERSION = 2
NO_CHANGE_FRACTION = 0.27
MIN_SIZE = 32  # below this, buildings shrink to a couple of pixels and stop looking like buildings


# ------------------------------------------------------------------------------------------ output
def _split_sizes(n: int, val_frac: float, test_frac: float) -> dict[str, int]:
    n_val, n_test = round(n * val_frac), round(n * test_frac)
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


def synth_params(n: int, seed: int, size: int = 64, val_frac: float = 0.15, test_frac: float = 0.15) -> dict:
    """What `synth.json` records; a cached folder is reused only when this matches exactly."""
    return {"generator": "rsforge.synth", "version": SYNTH_VERSION, "n": n, "seed": seed, "size": size,
            "val_frac": val_frac, "test_frac": test_frac}  # fmt: skip


def _check_replaceable(out: Path) -> None:
    """Refuse to replace anything but an earlier synthetic dataset (or an empty folder)."""
    if out.is_dir() and ((out / "synth.json").is_file() or not any(out.iterdir())):
        return
    if out.exists():
        raise FileExistsError(
            f"{out} exists and is not a synthetic dataset (no synth.json); not replacing it"
        )


def _conversation(qa: list[tuple[str, str]]) -> list[dict[str, str]]:
    turns = []
    for i, (question, answer) in enumerate(qa):
        turns.append({"from": "human", "value": ("<image>\n" if i == 0 else "") + question})
        turns.append({"from": "gpt", "value": answer})
    return turns


def generate(
    out_dir: str | Path,
    n: int,
    seed: int,
    size: int = 64,
    val_frac: float = 0.15,
    test_frac: float = 0.15,
    progress: bool = True,
) -> Path:
    """Write `n` synthetic pairs to `out_dir` (layout in the module docstring) and return its path.

    The dataset is built in a temporary folder beside `out_dir` and moved into place at the end, so
    an interrupted run never leaves a half-written dataset. An existing `out_dir` is replaced only
    if it is an earlier synthetic dataset (has `synth.json`) or empty.
    """
    if n < 1 or seed < 0 or size < MIN_SIZE:
        raise ValueError(
            f"synth: need n >= 1, seed >= 0 and size >= {MIN_SIZE}; got n={n}, seed={seed}, size={size}"
        )
    if not (val_frac >= 0 and test_frac >= 0 and val_frac + test_frac < 1):
        raise ValueError(
            f"synth: val_frac and test_frac must be >= 0 with a sum < 1; got {val_frac}, {test_frac}"
        )
    out = Path(out_dir)
    _check_replaceable(out)
    with atomic_dir(out) as tmp:
        _write(tmp, n, seed, size, val_frac, test_frac, f"synth {out.name}" if progress else None)
    return out


def _write(
    out: Path, n: int, seed: int, size: int, val_frac: float, test_frac: float, desc: str | None
) -> None:
    """Write the dataset into the new, empty folder `out`; `desc`: progress bar title, None for none."""
    sizes = _split_sizes(n, val_frac, test_frac)
    rng = np.random.default_rng(seed)
    (out / "list").mkdir()
    images: list[dict[str, Any]] = []
    conversations: list[dict[str, Any]] = []
    singles = _SingleImages(out, seed, size)
    imgid = sentid = 0
    # disable=None: no bar when the output is not a terminal (a log file would get one \r-joined line)
    with tqdm(total=n, desc=desc, unit="pair", disable=True if desc is None else None) as bar:
        for split in SPLITS:
            count = sizes[split]
            for sub in ("A", "B", "label"):
                (out / split / sub).mkdir(parents=True)
            # the no-change share is exact per split (not left to chance), so tiny splits have both kinds
            changed = np.ones(count, bool)
            changed[rng.permutation(count)[: round(count * NO_CHANGE_FRACTION)]] = False
            names, prompt_lines = [], []
            for i in range(count):
                name = f"{split}_{i + 1:06d}.png"
                pair = _make_pair(np.random.default_rng([seed, imgid]), size, bool(changed[i]))
                _save_png(pair.before, out / split / "A" / name)
                _save_png(pair.after, out / split / "B" / name)
                _save_png(pair.mask, out / split / "label" / name)
                sentids = list(range(sentid, sentid + len(pair.captions)))
                images.append({
                    "filepath": split, "filename": name, "split": split, "imgid": imgid, "sentids": sentids,
                    "sentences": [
                        {"raw": " " + c, "tokens": c.split(), "imgid": imgid, "sentid": s}
                        for s, c in zip(sentids, pair.captions, strict=True)
                    ],
                    "changeflag": int(bool(pair.events)),
                })  # fmt: skip
                conversations += _pair_conversations(split, name, pair)
                singles.add(split, i, name, imgid)
                names.append(name)
                prompt_lines.append(f"{name}  {pair.captions[0]}\n")  # SegChange-R1: name, two spaces, text
                imgid += 1
                sentid += len(pair.captions)
                bar.update()
            (out / "list" / f"{split}.txt").write_text("".join(f"{nm}\n" for nm in names))
            (out / split / "prompts.txt").write_text("".join(prompt_lines))
    (out / "captions.json").write_text(json.dumps({"images": images, "dataset": "rsforge-synth"}))
    (out / "conversations.json").write_text(json.dumps(conversations))
    singles.finish()
    params = synth_params(n, seed, size, val_frac, test_frac)
    (out / "synth.json").write_text(json.dumps({**params, "splits": sizes}, indent=2) + "\n")


def _pair_conversations(split: str, name: str, pair: _Pair) -> list[dict[str, Any]]:
    """ChangeChat style: one entry per task, plus a multi-turn dialogue going from coarse to fine."""
    stem, image = name.removesuffix(".png"), [f"{split}/A/{name}", f"{split}/B/{name}"]
    caption = ("change_captioning", prompt_for("change_captioning"), pair.captions[0])
    entries = [
        {"id": f"{stem}_{task}", "image": image, "task": task, "split": split,
         "conversations": _conversation([(q, a)])}
        for task, q, a in (caption, *pair.qa)
    ]  # fmt: skip
    dialogue = [(q, a) for _, q, a in (*pair.qa, caption)]
    entries.append({"id": f"{stem}_multi_turn", "image": image, "task": "change_qa", "split": split,
                    "conversations": _conversation(dialogue)})  # fmt: skip
    return entries
