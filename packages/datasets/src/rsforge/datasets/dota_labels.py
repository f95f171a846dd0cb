"""DOTA's `labelTxt` files, read and written as DOTA_devkit does (CAPTAIN-WHU/DOTA_devkit at commit
9938855, `dota_utils.parse_dota_poly`): optional header lines `imagesource:<source>` and
`gsd:<metres per pixel>` (`gsd:null` when unknown), then one instance a line,
`x1 y1 x2 y2 x3 y3 x4 y4 class [difficult]`, the difficult flag 0 when absent (1: hard to see; 2: a
piece the splitter cut off below its threshold, see `rsforge.datasets.dota_split`).

The class names of the releases: DOTA v1.0 has 15, v1.5 adds container-crane, v2.0 adds airport and
helipad (`DOTA_CLASSES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

DOTA_V1_0 = (
    "plane", "baseball-diamond", "bridge", "ground-track-field", "small-vehicle", "large-vehicle", "ship",
    "tennis-court", "basketball-court", "storage-tank", "soccer-ball-field", "roundabout", "harbor",
    "swimming-pool", "helicopter",
)  # fmt: skip
DOTA_CLASSES: dict[str, tuple[str, ...]] = {
    "1.0": DOTA_V1_0,
    "1.5": (*DOTA_V1_0, "container-crane"),
    "2.0": (*DOTA_V1_0, "container-crane", "airport", "helipad"),
}


@dataclass(frozen=True)
class Instance:
    polygon: tuple[float, ...]  # x1, y1, ..., x4, y4 in pixels
    category: str
    difficult: int
    line: int  # 1-based line in its label file, for messages


@dataclass
class LabelFile:
    path: Path
    instances: list[Instance] = field(default_factory=list)
    image_source: str | None = None
    gsd: float | None = None
    problems: list[str] = field(default_factory=list)  # "<path>:<line>: <what>", lines left out


def _header(label: LabelFile, key: str, value: str, n: int) -> None:
    if key == "imagesource":
        label.image_source = value or None
    elif key == "gsd" and value.lower() not in ("", "null", "none"):
        try:
            label.gsd = float(value)
        except ValueError:
            label.problems.append(f"{label.path}:{n}: gsd {value!r} is not a number")


def parse_label_text(text: str, path: Path) -> LabelFile:
    """The header fields and instances of one label file; a line that is neither is left out and
    named in `problems` (the devkit skips it silently)."""
    label = LabelFile(path)
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) == 1 and ":" in fields[0]:
            key, _, value = fields[0].partition(":")
            _header(label, key.strip().lower(), value.strip(), n)
            continue
        try:
            polygon = tuple(float(v) for v in fields[:8])
            category = fields[8]
            difficult = int(fields[9]) if len(fields) > 9 else 0
        except (ValueError, IndexError):
            label.problems.append(f"{path}:{n}: not 'x1 y1 ... x4 y4 class [difficult]'")
            continue
        label.instances.append(Instance(polygon, category, difficult, n))
    return label


def read_label_file(path: Path) -> LabelFile:
    """`parse_label_text` of a file; a ValueError names the file when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: unreadable label file ({exc})") from exc
    return parse_label_text(text, path)


def _value(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def label_text(instances: Sequence[Instance], image_source: str | None = None, gsd: float | None = None) -> str:
    """A label file's text: the header lines (when known), then the instances in order."""
    lines = [f"imagesource:{image_source}"] if image_source else []
    if image_source or gsd is not None:
        lines.append(f"gsd:{'null' if gsd is None else repr(gsd)}")
    lines += [" ".join([*(_value(v) for v in i.polygon), i.category, str(i.difficult)]) for i in instances]
    return "".join(line + "\n" for line in lines)
