"""What the dataset readers share: the "rsforge.data" logger, counting skipped samples, reading
JSON and split lists, and the box / polygon answer text.

Every reader validates as it goes: a sample with a missing image, an unreadable annotation file or
an empty caption / answer is logged (warning, with the path at fault) and skipped, and the reader
ends with one warning counting what it skipped, so one bad file does not stop a run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("rsforge.data")

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class Skips:
    """Samples of one split skipped for a problem; `skip` logs each with the path at fault."""

    def __init__(self, source: Path | str, split: str) -> None:
        self.source, self.split, self.count = source, split, 0

    def skip(self, path: Path | str, reason: str, n: int = 1) -> None:
        log.warning("%s: %s; skipped", path, reason)
        self.count += n

    def summary(self, total: int) -> None:
        if self.count:
            log.warning(
                "%s: skipped %d of %d %s samples (see the warnings above)", self.source, self.count, total, self.split
            )


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FileNotFoundError(f"{path}: cannot read: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"{path}: invalid JSON: {exc}") from exc


def read_lines(path: Path) -> list[str]:
    """The non-empty lines of a text file, stripped."""
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from exc


def under(root: Path, name: str | None, default: Path) -> Path:
    """`name` relative to `root` (or absolute); `default` when None. Resolved: samples travel to
    Ray workers, whose working directory may differ."""
    return (default if name is None else root / name).resolve()


def first_dir(root: Path, names: Sequence[str]) -> Path:
    """The first of `names` that is a folder in `root`, else `root / names[0]` (reported missing later)."""
    return next((root / n for n in names if (root / n).is_dir()), root / names[0])


def split_list(root: Path, split: str) -> Path | None:
    """`<root>/<split>.txt` or `<root>/list/<split>.txt`: the ids of a split, one a line."""
    return next((p for p in (root / f"{split}.txt", root / "list" / f"{split}.txt") if p.is_file()), None)


def no_split(where: Path, split: str, looked_for: str, found: Sequence[str]) -> ValueError:
    return ValueError(
        f"{where}: no {split!r} split (looked for {looked_for}); splits found: {', '.join(found) or 'none'}"
    )


def find_image(folder: Path, stem: str, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> Path | None:
    """`<folder>/<stem><suffix>` for the first suffix that exists."""
    return next((folder / f"{stem}{s}" for s in suffixes if (folder / f"{stem}{s}").is_file()), None)


def number(value: float) -> str:
    """A coordinate as answer text: integers without a decimal point, else one decimal."""
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def coords_text(values: Sequence[float]) -> str:
    """`[x1, y1, x2, y2]` (box) or the 8 numbers of a polygon, in pixels."""
    return "[" + ", ".join(number(v) for v in values) + "]"
