"""What a task is: how to read its reference from a sample, parse a model answer, decide whether it
is right, and score a split; and the lookup of the tasks that plugins register (`register_tasks`).

`get_task(name).score(samples, answers)` returns the metrics (`{group: {metric: value}}`, the
shape `rsforge.tasks.evaluate.Evaluation.metrics` has) and, per sample, the parsed answer (JSON-ready)
and whether it is correct (None for free-text tasks). Malformed answers are counted in the metrics'
`malformed` and scored as wrong; only a malformed *reference* (a data problem) raises, as a
ValueError naming the sample, and `check_references` finds those before any generation runs.

Sample fields read: the last assistant turn (`Sample.answer`), `references`, `boxes`, `changed`, and
`Sample.meta` where present: `candidates` (classification), `question_type` (QA and classification
groups), `expression` / `question` (prompt fields).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rsforge.core.plugins import PluginManager
from rsforge.core.sample import META_CANDIDATES as META_CANDIDATES
from rsforge.core.sample import Sample
from rsforge.datasets.prompts import META_EXPRESSION as META_EXPRESSION

# Re-exported: it lived here before training applied it too, and callers (tests, plugins) import it from here.
from rsforge.datasets.prompts import with_prompt_overrides as with_prompt_overrides

META_QUESTION_TYPE = "question_type"


@dataclass
class Scored:
    metrics: dict[str, dict[str, float]]
    parsed: list[Any]
    correct: list[bool | None]


def reference_answer(sample: Sample) -> str:
    text = sample.answer if sample.answer is not None else (sample.references[0] if sample.references else None)
    if text is None:
        raise ValueError(f"sample {sample.id} ({sample.task}): no reference answer to score against")
    return text


def bad_reference(sample: Sample, what: str) -> ValueError:
    return ValueError(f"sample {sample.id} ({sample.task}): reference {reference_answer(sample)!r} is not {what}")


def _first_image_size(sample: Sample) -> tuple[float, float]:
    from PIL import Image

    with Image.open(sample.images[0]) as image:
        return float(image.width), float(image.height)


@dataclass(frozen=True)
class Task:
    """One task's answer format and metric. `parse(text, sample, normalized)` returns the parsed answer
    or None (malformed); `normalized` is the (width, height) of the first image when answers are in
    0-1000 normalised coordinates, else None. `metric(preds, refs, samples)` returns `{group: {...}}`."""

    name: str
    reference: Callable[[Sample], Any]
    parse: Callable[[str, Sample, tuple[float, float] | None], Any]
    is_correct: Callable[[Any, Any], bool]
    metric: Callable[[list[Any], list[Any], Sequence[Sample]], dict[str, dict[str, float]]]
    to_json: Callable[[Any], Any] = lambda value: value
    uses_coordinates: bool = False

    def check_references(self, samples: Sequence[Sample]) -> list[Any]:
        """Every sample's parsed reference; a ValueError names the first that cannot be read."""
        return [self.reference(s) for s in samples]

    def score(self, samples: Sequence[Sample], answers: Sequence[str], *, normalized_coords: bool = False) -> Scored:
        if len(samples) != len(answers):
            raise ValueError(f"{self.name}: {len(samples)} samples but {len(answers)} answers")
        refs = self.check_references(samples)
        preds = []
        for sample, text in zip(samples, answers, strict=True):
            size = _first_image_size(sample) if normalized_coords and self.uses_coordinates else None
            preds.append(self.parse(text, sample, size))
        correct = [pred is not None and self.is_correct(pred, ref) for pred, ref in zip(preds, refs, strict=True)]
        parsed = [None if pred is None else self.to_json(pred) for pred in preds]
        return Scored(self.metric(preds, refs, samples), parsed, correct)


@dataclass(frozen=True)
class CaptionTask:
    """Free-text captions, scored by coco-caption metrics over all samples and, where samples say
    whether their pair changed, over the changed and unchanged ones (`captions/<group>`)."""

    name: str

    def check_references(self, samples: Sequence[Sample]) -> list[list[str]]:
        refs = []
        for s in samples:
            r = s.references or ([s.answer] if s.answer else [])
            if not r:
                raise ValueError(f"sample {s.id} ({s.task}): no reference caption")
            refs.append(list(r))
        return refs

    def score(self, samples: Sequence[Sample], answers: Sequence[str], *, normalized_coords: bool = False) -> Scored:
        from rsforge.tasks.metrics.captions import caption_metrics_by_group  # pycocoevalcap only when used

        if len(samples) != len(answers):
            raise ValueError(f"{self.name}: {len(samples)} samples but {len(answers)} answers")
        refs = dict(zip((s.id for s in samples), self.check_references(samples), strict=True))
        preds = {s.id: a for s, a in zip(samples, answers, strict=True)}
        groups = {s.id: "changed" if s.changed else "unchanged" for s in samples if s.changed is not None}
        by_group = caption_metrics_by_group(preds, refs, groups)
        return Scored({f"captions/{g}": v for g, v in by_group.items()}, list(answers), [None] * len(answers))


def get_task(name: str, plugins: PluginManager) -> Task | CaptionTask:
    """The registered task called `name`; an error lists the known ones."""
    spec = plugins.registry.get("task", name, path="task")
    return spec.load_factory()(spec.config(name=name))


def task_names(plugins: PluginManager) -> list[str]:
    return plugins.registry.names("task")
