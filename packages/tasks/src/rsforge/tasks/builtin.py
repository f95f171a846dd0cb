"""The built-in tasks: binary change, counting, 3x3-grid localisation, classification, VQA, change QA,
grounding, oriented grounding, and the two captioning tasks. Registered through `register_tasks` like
any plugin's tasks (`rsforge.tasks.plugin`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rsforge.core.configs import TaskConfig
from rsforge.core.sample import Sample
from rsforge.datasets.prompts import COORDINATES, GRID_CELLS, META_COORDINATES, META_IMAGE_SIZE
from rsforge.tasks import parsers as p
from rsforge.tasks.metrics import answers as am
from rsforge.tasks.metrics import boxes as bm
from rsforge.tasks.metrics import objects as om
from rsforge.tasks.task import (
    META_CANDIDATES,
    META_QUESTION_TYPE,
    CaptionTask,
    Scored,
    Task,
    bad_reference,
    reference_answer,
)


# ------------------------------------------------------------------------------------------ tasks
def _parsed_reference(parse: Callable[[str], Any], what: str) -> Callable[[Sample], Any]:
    def reference(sample: Sample) -> Any:
        value = parse(reference_answer(sample))
        if value is None:
            raise bad_reference(sample, what)
        return value

    return reference


def _binary_reference(sample: Sample) -> bool:
    if sample.answer is None and not sample.references and sample.changed is not None:
        return sample.changed
    return _parsed_reference(p.parse_yes_no, "yes or no")(sample)


def _candidates(sample: Sample) -> list[str] | None:
    candidates = sample.meta.get(META_CANDIDATES)
    return [str(c) for c in candidates] if candidates else None


def _classification_reference(sample: Sample) -> str:
    label = reference_answer(sample)
    candidates = _candidates(sample)
    if candidates is not None:
        choice = p.parse_choice(label, candidates)
        if choice is None:
            raise bad_reference(sample, f"one of its candidates {candidates}")
        return p.normalize_text(choice)
    return p.normalize_text(label)


def _classification_parse(text: str, sample: Sample, _size: tuple[float, float] | None) -> str | None:
    candidates = _candidates(sample)
    if candidates is not None:
        choice = p.parse_choice(text, candidates)
        return None if choice is None else p.normalize_text(choice)
    return p.normalize_text(text) or None


def _question_types(samples: Sequence[Sample]) -> list[str | None]:
    return [s.meta.get(META_QUESTION_TYPE) for s in samples]


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
    refs = [p.normalize_answer(r) for r in (sample.references or [reference_answer(sample)])]
    if not any(refs):
        raise bad_reference(sample, "a non-empty answer")
    return refs


def _qa_metric(name: str) -> Callable[[list, list, Sequence[Sample]], dict[str, dict[str, float]]]:
    def metric(preds: list, refs: list, samples: Sequence[Sample]) -> dict[str, dict[str, float]]:
        correct = [pr is not None and pr in r for pr, r in zip(preds, refs, strict=True)]
        malformed = sum(pr is None for pr in preds)
        return {name: am.accuracy_by_group(correct, _question_types(samples), malformed=malformed)}

    return metric


def _answer_scale(sample: Sample, size: tuple[float, float] | None) -> tuple[float, float] | None:
    """The (width, height) a 0-1000 answer is scaled by, or None for pixel answers. A sample whose
    reader recorded `meta["coordinates"]` is read in those units, whatever the evaluation's
    `normalized_coords` flag (`size`) says: a model trained on the data answers as the data does."""
    coordinates = sample.meta.get(META_COORDINATES)
    if coordinates is None:
        return size
    if coordinates == "pixels":
        return None
    if coordinates != "norm1000":
        raise ValueError(f"sample {sample.id} ({sample.task}): meta['{META_COORDINATES}'] is {coordinates!r}, "
                         f"not one of {', '.join(COORDINATES)}")
    recorded = sample.meta.get(META_IMAGE_SIZE)
    if recorded is not None:
        return float(recorded[0]), float(recorded[1])
    if size is not None:
        return size
    from PIL import Image  # only for samples whose reader did not record the size

    with Image.open(sample.images[0]) as image:
        return float(image.width), float(image.height)


def _box_reference(sample: Sample) -> list[tuple[float, ...]]:
    boxes = [tuple(float(v) for v in b) for b in (sample.boxes or []) if len(b) == 4]
    if boxes:
        return boxes
    box = p.parse_box(reference_answer(sample), normalized=_answer_scale(sample, None))
    if box is None:
        raise bad_reference(sample, "a box [x1, y1, x2, y2] (and the sample has no 4-number boxes)")
    return [box]


def _polygon_reference(sample: Sample) -> list[p.Polygon]:
    polygons = [tuple((float(b[k]), float(b[k + 1])) for k in range(0, 8, 2)) for b in (sample.boxes or [])
                if len(b) == 8]  # fmt: skip
    if polygons:
        return polygons
    parsed = p.parse_polygons(reference_answer(sample), normalized=_answer_scale(sample, None))
    if parsed is None:
        raise bad_reference(sample, "8-number polygons (and the sample has no 8-number boxes)")
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
        Task("grounding", _box_reference, lambda t, s, size: p.parse_box(t, normalized=_answer_scale(s, size)),
             lambda a, refs: max(bm.box_iou(a, r) for r in refs) >= 0.5,
             lambda preds, refs, _s: {"grounding": bm.grounding_metrics(preds, refs)},
             to_json=list, uses_coordinates=True),
        Task("oriented_grounding", _polygon_reference,
             lambda t, s, size: p.parse_polygons(t, normalized=_answer_scale(s, size)),
             _polygons_correct,
             lambda preds, refs, _s: {"oriented_grounding": bm.polygon_detection_metrics(preds, refs)},
             to_json=lambda polygons: [[c for point in poly for c in point] for poly in polygons],
             uses_coordinates=True),
    )
}  # fmt: skip

CAPTION_TASKS = ("change_captioning", "captioning", "change_open_qa")


class ObjectCaptionTask(CaptionTask):
    """A caption task that also reports the seed's oversights and hallucinations (`objects/<group>`,
    `rsforge.tasks.metrics.objects`) with the entities of the registered `sde` reward; without one, a
    warning says they are skipped."""

    def score(self, samples: Sequence[Sample], answers: Sequence[str], *, normalized_coords: bool = False) -> Scored:
        scored = super().score(samples, answers, normalized_coords=normalized_coords)
        entities = om.registered_entities()
        if entities is not None:
            refs = dict(zip((s.id for s in samples), self.check_references(samples), strict=True))
            preds = {s.id: a for s, a in zip(samples, answers, strict=True)}
            groups = {s.id: "changed" if s.changed else "unchanged" for s in samples if s.changed is not None}
            by_group = om.object_metrics_by_group(preds, refs, groups, entities)
            scored.metrics.update({f"objects/{g}": v for g, v in by_group.items()})
        return scored


def builtin_task(config: TaskConfig) -> Task | CaptionTask:
    """The factory every built-in task is registered with."""
    if config.name in CAPTION_TASKS:
        return ObjectCaptionTask(config.name)
    return TASKS[config.name]
