"""The task registry: for each task name, how to read its reference from a sample, parse a model
answer, decide whether it is right, and score a split.

`get_task(name).score(samples, answers)` returns the metrics (`{group: {metric: value}}`, the
shape `rsforge.core.evaluate.Evaluation.metrics` has) and, per sample, the parsed answer (JSON-ready)
and whether it is correct (None for free-text tasks). Malformed answers are counted in the metrics'
`malformed` and scored as wrong; only a malformed *reference* (a data problem) raises, as a
ValueError naming the sample, and `check_references` finds those before any generation runs.

Sample fields read: the last assistant turn (`Sample.answer`), `references`, `boxes`, `changed`, and
`Sample.meta` where present: `candidates` (classification), `question_type` (QA and classification
groups), `expression` / `question` (prompt fields).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rsforge.core.data.schema import Sample, Turn
from rsforge.core.metrics import answers as am
from rsforge.core.metrics import boxes as bm
from rsforge.core.prompts import GRID_CELLS, prompt_for
from rsforge.core.tasks import parsers as p

META_CANDIDATES = "candidates"
META_QUESTION_TYPE = "question_type"
META_EXPRESSION = "expression"


def sample_meta(sample: Sample) -> Mapping[str, Any]:
    # `Sample.meta` is optional: older readers do not set it
    return getattr(sample, "meta", None) or {}


@dataclass
class Scored:
    metrics: dict[str, dict[str, float]]
    parsed: list[Any]
    correct: list[bool | None]


def _answer(sample: Sample) -> str:
    text = sample.answer if sample.answer is not None else (sample.references[0] if sample.references else None)
    if text is None:
        raise ValueError(f"sample {sample.id} ({sample.task}): no reference answer to score against")
    return text


def _bad_reference(sample: Sample, what: str) -> ValueError:
    return ValueError(f"sample {sample.id} ({sample.task}): reference {_answer(sample)!r} is not {what}")


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


# ------------------------------------------------------------------------------------------ tasks
def _parsed_reference(parse: Callable[[str], Any], what: str) -> Callable[[Sample], Any]:
    def reference(sample: Sample) -> Any:
        value = parse(_answer(sample))
        if value is None:
            raise _bad_reference(sample, what)
        return value

    return reference


def _binary_reference(sample: Sample) -> bool:
    if sample.answer is None and not sample.references and sample.changed is not None:
        return sample.changed
    return _parsed_reference(p.parse_yes_no, "yes or no")(sample)


def _candidates(sample: Sample) -> list[str] | None:
    candidates = sample_meta(sample).get(META_CANDIDATES)
    return [str(c) for c in candidates] if candidates else None


def _classification_reference(sample: Sample) -> str:
    label = _answer(sample)
    candidates = _candidates(sample)
    if candidates is not None:
        choice = p.parse_choice(label, candidates)
        if choice is None:
            raise _bad_reference(sample, f"one of its candidates {candidates}")
        return p.normalize_text(choice)
    return p.normalize_text(label)


def _classification_parse(text: str, sample: Sample, _size: tuple[float, float] | None) -> str | None:
    candidates = _candidates(sample)
    if candidates is not None:
        choice = p.parse_choice(text, candidates)
        return None if choice is None else p.normalize_text(choice)
    return p.normalize_text(text) or None


def _question_types(samples: Sequence[Sample]) -> list[str | None]:
    return [sample_meta(s).get(META_QUESTION_TYPE) for s in samples]


def _classification_metric(preds: list, refs: list, samples: Sequence[Sample]) -> dict[str, dict[str, float]]:
    correct = [pr == r for pr, r in zip(preds, refs, strict=True)]
    malformed = sum(pr is None for pr in preds)
    by_class = am.accuracy_by_group(correct, refs)
    return {
        "classification": am.accuracy_by_group(correct, _question_types(samples), malformed=malformed),
        "classification/classes": {k.removeprefix("accuracy/"): v for k, v in by_class.items()
                                   if k.startswith("accuracy/")},
    }  # fmt: skip


def _qa_reference(sample: Sample) -> list[str]:
    refs = [p.normalize_answer(r) for r in (sample.references or [_answer(sample)])]
    if not any(refs):
        raise _bad_reference(sample, "a non-empty answer")
    return refs


def _qa_metric(name: str) -> Callable[[list, list, Sequence[Sample]], dict[str, dict[str, float]]]:
    def metric(preds: list, refs: list, samples: Sequence[Sample]) -> dict[str, dict[str, float]]:
        correct = [pr is not None and pr in r for pr, r in zip(preds, refs, strict=True)]
        malformed = sum(pr is None for pr in preds)
        return {name: am.accuracy_by_group(correct, _question_types(samples), malformed=malformed)}

    return metric


def _box_reference(sample: Sample) -> list[tuple[float, ...]]:
    boxes = [tuple(float(v) for v in b) for b in (sample.boxes or []) if len(b) == 4]
    if boxes:
        return boxes
    box = p.parse_box(_answer(sample))
    if box is None:
        raise _bad_reference(sample, "a box [x1, y1, x2, y2] (and the sample has no 4-number boxes)")
    return [box]


def _polygon_reference(sample: Sample) -> list[p.Polygon]:
    polygons = [tuple((float(b[k]), float(b[k + 1])) for k in range(0, 8, 2)) for b in (sample.boxes or [])
                if len(b) == 8]  # fmt: skip
    if polygons:
        return polygons
    parsed = p.parse_polygons(_answer(sample))
    if parsed is None:
        raise _bad_reference(sample, "8-number polygons (and the sample has no 8-number boxes)")
    return parsed


def _polygons_correct(pred: list, ref: list) -> bool:
    hits, _ = bm.match_polygons(pred, ref)
    return hits == len(pred) == len(ref)


def _grid_json(grid: Mapping[str, frozenset[str]]) -> dict[str, list[str]]:
    return {name: [c for c in GRID_CELLS if c in cells] for name, cells in grid.items()}


def _counts_json(counts: am.Counts) -> dict[str, Any]:
    return {"total": counts.total, "per_class": dict(counts.per_class)}


def _ignore_context(parse: Callable[[str], Any]) -> Callable[[str, Sample, tuple[float, float] | None], Any]:
    return lambda text, _sample, _size: parse(text)


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("binary_change", _binary_reference, _ignore_context(p.parse_yes_no), lambda a, b: a == b,
             lambda preds, refs, _s: {"binary_change": am.binary_metrics(preds, refs)}),
        Task("counting", _parsed_reference(p.parse_counts, "a count"), _ignore_context(p.parse_counts),
             am.counts_match, lambda preds, refs, _s: {"counting": am.count_metrics(preds, refs)},
             to_json=_counts_json),
        Task("grid_localization", _parsed_reference(p.parse_grid, "a 3x3-grid answer"),
             _ignore_context(p.parse_grid), lambda a, b: dict(a) == dict(b),
             lambda preds, refs, _s: {"grid_localization": am.grid_metrics(preds, refs)}, to_json=_grid_json),
        Task("classification", _classification_reference, _classification_parse, lambda a, b: a == b,
             _classification_metric),
        Task("vqa", _qa_reference, _ignore_context(lambda t: p.normalize_answer(t) or None),
             lambda a, refs: a in refs, _qa_metric("vqa")),
        Task("change_qa", _qa_reference, _ignore_context(lambda t: p.normalize_answer(t) or None),
             lambda a, refs: a in refs, _qa_metric("change_qa")),
        Task("grounding", _box_reference, lambda t, _s, size: p.parse_box(t, normalized=size),
             lambda a, refs: max(bm.box_iou(a, r) for r in refs) >= 0.5,
             lambda preds, refs, _s: {"grounding": bm.grounding_metrics(preds, refs)},
             to_json=list, uses_coordinates=True),
        Task("oriented_grounding", _polygon_reference, lambda t, _s, size: p.parse_polygons(t, normalized=size),
             _polygons_correct,
             lambda preds, refs, _s: {"oriented_grounding": bm.polygon_detection_metrics(preds, refs)},
             to_json=lambda polygons: [[c for point in poly for c in point] for poly in polygons],
             uses_coordinates=True),
    )
}  # fmt: skip

CAPTION_TASKS = ("change_captioning", "captioning")


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
        from rsforge.core.metrics.captions import caption_metrics_by_group  # pycocoevalcap only when used

        if len(samples) != len(answers):
            raise ValueError(f"{self.name}: {len(samples)} samples but {len(answers)} answers")
        refs = dict(zip((s.id for s in samples), self.check_references(samples), strict=True))
        preds = {s.id: a for s, a in zip(samples, answers, strict=True)}
        groups = {s.id: "changed" if s.changed else "unchanged" for s in samples if s.changed is not None}
        by_group = caption_metrics_by_group(preds, refs, groups)
        return Scored({f"captions/{g}": v for g, v in by_group.items()}, list(answers), [None] * len(answers))


def get_task(name: str) -> Task | CaptionTask:
    """The task called `name`; a KeyError lists the known ones."""
    if name in TASKS:
        return TASKS[name]
    if name in CAPTION_TASKS:
        return CaptionTask(name)
    known = ", ".join(sorted([*TASKS, *CAPTION_TASKS]))
    raise KeyError(f"unknown task {name!r}; known tasks: {known}")


def task_names() -> list[str]:
    return sorted([*TASKS, *CAPTION_TASKS])


def with_prompt_overrides(sample: Sample, overrides: Mapping[str, str] | None) -> Sample:
    """`sample` asked in the wording of `overrides` (a recipe's `prompts`), so a model is evaluated
    with the prompt it was trained on. Only single-question samples are re-worded, the template's
    fields filled from `Sample.meta` (and `{question}` from the sample's own question); a sample whose
    template needs a field it lacks is kept as it is."""
    if not overrides or sample.task not in overrides or len(sample.prompt) != 1:
        return sample
    meta = sample_meta(sample)
    question = sample.prompt[0].text
    try:
        text = prompt_for(sample.task, overrides=overrides, candidates=meta.get(META_CANDIDATES),
                          expression=meta.get(META_EXPRESSION), question=meta.get("question", question))
    except ValueError:
        return sample
    return replace(sample, conversation=[Turn("user", text), *sample.conversation[1:]])
