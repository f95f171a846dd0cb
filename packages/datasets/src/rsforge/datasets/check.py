"""`rsforge data check`: read a dataset through its registered reader and report statistics and
problems, without training: samples per split, tasks, answer lengths, references per sample, the
sizes of a sample of images (each decoded, so unreadable files show), and every warning the reader
logged (missing images, empty answers, unreadable annotation files).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rsforge.core.sample import Sample
from rsforge.datasets.common import SPLITS, log


@dataclass
class SplitReport:
    split: str
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None  # the split could not be read at all (absent, or a broken file)
    image_kinds: Counter = field(default_factory=Counter)
    checked_images: int = 0


@dataclass
class CheckReport:
    splits: list[SplitReport]
    problems: list[str]

    @property
    def usable(self) -> bool:
        return any(s.samples for s in self.splits)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _check_images(report: SplitReport, max_images: int, problems: list[str]) -> None:
    """Decode a spread-out sample of the split's images (about `max_images`), and compare the dates of
    each sample they belong to: a pair whose dates differ in size or bands is reported, since the loader
    then silently makes them alike (resizing, or repeating a grey band into RGB)."""
    from rsforge.datasets.images import ImageError, image_info

    samples = report.samples
    per_sample = max((len(s.images) for s in samples), default=1)
    step = max(1, len(samples) * per_sample // max_images) if max_images else len(samples) + 1
    seen: dict[str, tuple[int, int, str] | None] = {}
    for sample in samples[::step]:
        if max_images and report.checked_images >= max_images:
            break
        for path in sample.images:
            if path in seen:
                continue
            report.checked_images += 1
            try:
                seen[path] = image_info(path)
            except ImageError as exc:
                seen[path] = None
                problems.append(str(exc))
                continue
            width, height, kind = seen[path]
            report.image_kinds[f"{width}x{height} {kind}"] += 1
        infos = [(path, seen[path]) for path in sample.images if seen.get(path)]
        if len({info for _, info in infos}) > 1:
            (first, a), *others = infos
            path, b = next((p, i) for p, i in others if i != a)
            problems.append(f"sample {sample.id}: its dates differ: {first} is {a[0]}x{a[1]} {a[2]}, {path} is "
                            f"{b[0]}x{b[1]} {b[2]} (training resizes both and reads each as RGB)")


def check_dataset(load, config, splits: Sequence[str] = SPLITS, max_images: int = 50) -> CheckReport:
    """Read each of `splits` with `load(config, split)`; `max_images` images per split are decoded."""
    collect = _Collect()
    log.addHandler(collect)
    reports, problems = [], []
    try:
        for split in splits:
            report = SplitReport(split)
            try:
                report.samples = load(config, split)
            except (ValueError, FileNotFoundError, KeyError) as exc:
                report.error = str(exc)
            reports.append(report)
            problems += collect.messages
            collect.messages = []
            _check_images(report, max_images, problems)
    finally:
        log.removeHandler(collect)
    return CheckReport(reports, problems)


def _spread(values: list[int]) -> str:
    if not values:
        return "-"
    return f"min {min(values)}, mean {sum(values) / len(values):.1f}, max {max(values)}"


def format_report(report: CheckReport, root: Path | str, fmt: str, max_problems: int = 20) -> str:
    lines = [f"dataset {root} (format {fmt})"]
    for s in report.splits:
        if s.error is not None:
            lines.append(f"  {s.split}: not readable: {s.error}")
            continue
        lines.append(f"  {s.split}: {len(s.samples)} samples")
        if not s.samples:
            continue
        tasks = Counter(x.task for x in s.samples)
        lines.append("    tasks: " + ", ".join(f"{t} {n}" for t, n in sorted(tasks.items())))
        answers = [len(x.answer.split()) for x in s.samples if x.answer is not None]
        lines.append(f"    answer words: {_spread(answers)}")
        lines.append(f"    references per sample: {_spread([len(x.references) for x in s.samples])}")
        turns = [len(x.conversation) for x in s.samples]
        if max(turns) > 2:
            lines.append(f"    turns per sample: {_spread(turns)}")
        lines.append(f"    images per sample: {_spread([len(x.images) for x in s.samples])}")
        boxes = [len(x.boxes) for x in s.samples if x.boxes]
        if boxes:  # grounding: how many objects the answers name, so a reader that drops some shows
            lines.append(f"    boxes: {sum(boxes)} ({_spread(boxes)} per sample)")
        kinds = ", ".join(f"{k} ({n})" for k, n in s.image_kinds.most_common())
        lines.append(f"    image sizes ({s.checked_images} checked): {kinds or 'none readable'}")
    lines.append(f"problems: {len(report.problems)}")
    lines += [f"  {p}" for p in report.problems[:max_problems]]
    if len(report.problems) > max_problems:
        lines.append(f"  ... and {len(report.problems) - max_problems} more")
    lines.append("usable" if report.usable else "nothing usable: no split has a readable sample")
    return "\n".join(lines)
