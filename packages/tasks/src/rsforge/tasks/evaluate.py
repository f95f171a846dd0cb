"""Evaluate a model on a split: captions through pycocoevalcap, masks through an accumulated confusion
at the data's native resolution (`evaluate`, used by training runs), any task with its own parser and
metric (`evaluate_task`), and masks alone (`evaluate_mask_task`; both behind `rsforge eval`).

Also scores the trivial baselines with the same code (the most frequent training answer for every
sample; the all-zero and the all-changed mask), so a report can show them side by side. Only the rows
that both the data and the model have are reported: no caption rows for a model without a decoder or
data without references, no mask rows for a model without a mask head or data without masks.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from rsforge.core.atomic import atomic_write_text
from rsforge.core.batch import Batch
from rsforge.core.interfaces import GenerationOptions
from rsforge.core.plugins import PluginManager
from rsforge.core.sample import Sample
from rsforge.datasets.torch_dataset import SampleDataset, collate
from rsforge.tasks.class_eval import ClassifierAccuracy, majority_label_accuracy
from rsforge.tasks.mask_eval import evaluate_masks, mask_baselines, mask_samples
from rsforge.tasks.metrics.captions import caption_metrics, caption_metrics_by_group
from rsforge.tasks.metrics.masks import MaskConfusion
from rsforge.tasks.task import get_task, with_prompt_overrides

MOST_FREQUENT = "most frequent answer"


@dataclass
class Evaluation:
    metrics: dict[str, dict[str, float]]
    predictions: list[dict] = field(default_factory=list)


def _groups(samples: list[Sample]) -> dict[str, str]:
    return {s.id: "changed" if s.changed else "unchanged" for s in samples if s.changed is not None}


def _score(samples: list[Sample], answers: dict[str, str] | None, confusion: MaskConfusion | None) -> dict:
    """Caption metrics where there are answers and references; mask metrics where pixels were counted."""
    metrics: dict[str, dict[str, float]] = {}
    with_refs = [s for s in samples if s.references] if answers is not None else []
    if with_refs:
        refs = {s.id: s.references for s in with_refs}
        preds = {s.id: answers[s.id] for s in with_refs}
        groups = _groups(with_refs)
        if groups:
            by_group = caption_metrics_by_group(preds, refs, groups)
        else:
            by_group = {"all": caption_metrics(preds, refs)}
        metrics.update({f"captions/{g}": v for g, v in by_group.items()})
    if confusion is not None and confusion.tp + confusion.fp + confusion.fn + confusion.tn:
        metrics["mask"] = confusion.compute()
    return metrics


def _native(model) -> bool:
    return bool(model.mask_heads) and model.recipe.eval.mask_resolution == "native"


def _native_masks(model, samples: list[Sample], progress: bool) -> tuple[MaskConfusion, dict[str, int]]:
    cfg = model.recipe.eval
    pairs = mask_samples(samples)
    confusion, changed = evaluate_masks(model, pairs, tile=cfg.tile, overlap=cfg.overlap, progress=progress)
    return confusion, {s.id: n for s, n in zip(pairs, changed, strict=True)}


@torch.no_grad()
def _generate(
    model, samples: list[Sample], *, batch_size: int, progress: bool, desc: str,
    max_new_tokens: int = GenerationOptions.max_new_tokens, texts: bool = True,
) -> Iterator[tuple[Batch, list[str], torch.Tensor | None]]:
    """(batch, generated texts, predicted masks or None) per batch; masks where the model has a head,
    the batch has target masks and they are scored at the model's input size; no texts with `texts=False`."""
    model.eval()
    texts = texts and model.decoder is not None
    if texts:  # the recipe's decoding: beams and penalties (DeltaVLM: 5 beams, penalty 1.5)
        cfg = model.recipe.eval
        options = GenerationOptions(max_new_tokens=max_new_tokens, num_beams=cfg.num_beams,
                                    repetition_penalty=cfg.repetition_penalty, length_penalty=cfg.length_penalty)
    dataset = SampleDataset(samples, model.image_size, model.interpolation, channels=model.in_chans)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
    # disable=None: no bar when the output is not a terminal (a log file would get one \r-joined line)
    with tqdm(total=len(samples), desc=desc, unit="sample", disable=None if progress else True) as bar:
        for batch in loader:
            answers = model.generate(batch.images, batch.prompts, options).texts if texts else [""] * len(batch)
            masks = None
            if model.mask_heads and batch.masks is not None and not _native(model):
                masks = model.predict_mask(batch.images[:, 0], batch.images[:, 1], instructions=batch.instructions)
            yield batch, answers, masks
            bar.update(len(batch))


def _update_confusion(confusion: MaskConfusion | None, batch: Batch, masks: torch.Tensor | None) -> None:
    if confusion is not None and masks is not None:
        valid = batch.mask_valid
        if batch.masks.dtype == torch.int64:  # K-class masks: class ids, scored with their class table's names
            table = next(meta["mask_classes"] for meta, v in zip(batch.meta, valid.tolist(), strict=True) if v)
            confusion.update_classes(masks[valid], batch.masks[valid], [c["name"] for c in table])
        else:
            confusion.update(masks[valid], batch.masks[valid] > 0.5)


def evaluate(
    model, samples: list[Sample], *, batch_size: int = 16, max_new_tokens: int = GenerationOptions.max_new_tokens,
    progress: bool = True,
) -> Evaluation:
    answers: dict[str, str] = {}
    predictions: list[dict] = []
    changed: dict[str, int] = {}
    confusion = MaskConfusion() if model.mask_heads else None
    accuracy = ClassifierAccuracy(model)
    if _native(model):
        confusion, changed = _native_masks(model, samples, progress)
        if model.decoder is None and not accuracy.wanted:  # nothing left to predict: no need to read every pair again
            predictions = [{"id": s.id, "prediction": "", "references": list(s.references),
                            **({"changed_pixels": changed[s.id]} if s.id in changed else {})} for s in samples]
            return Evaluation(_score(samples, None, confusion), predictions)
    batches = _generate(model, samples, batch_size=batch_size, max_new_tokens=max_new_tokens, progress=progress,
                        desc="evaluate")
    for batch, texts, masks in batches:
        _update_confusion(confusion, batch, masks)
        accuracy.update(batch)
        for i, sample_id in enumerate(batch.ids):
            answers[sample_id] = texts[i]
            row = {"id": sample_id, "prediction": texts[i], "references": batch.references[i]}
            if masks is not None:
                changed[sample_id] = int(masks[i].sum())
            if sample_id in changed:
                row["changed_pixels"] = changed[sample_id]
            predictions.append(row)
    metrics = _score(samples, answers if model.decoder is not None else None, confusion)
    return Evaluation({**metrics, **accuracy.metrics()}, predictions)


def evaluate_task(
    model,
    samples: list[Sample],
    task: str,
    *,
    batch_size: int = 16,
    max_new_tokens: int = GenerationOptions.max_new_tokens,
    prompts: Mapping[str, str] | None = None,
    normalized_coords: bool = False,
    progress: bool = True,
    plugins: PluginManager | None = None,
) -> Evaluation:
    """Generate an answer for every sample (all of task `task`) and score them with the task's parser
    and metric; also mask metrics where the model has a mask head and the samples have masks.

    `prompts` overrides the questions' wording (default: the model recipe's `prompts`);
    `normalized_coords`: the model answers boxes in 0-1000 normalised coordinates, converted to
    pixels of the first image before scoring. `plugins` find the task (default: the installed ones).
    Predictions: one row per sample with id, prompt,
    prediction, references, parsed (None when malformed) and correct (None for free-text tasks).
    """
    spec = get_task(task, plugins or PluginManager())
    if not samples:
        raise ValueError(f"no {task} samples to evaluate")
    others = sorted({s.task for s in samples if s.task != task})
    if others:
        raise ValueError(f"evaluate_task({task!r}) got samples of other tasks: {', '.join(others)}")
    if model.decoder is None:
        raise ValueError(f"model '{model.recipe.name}' has no decoder, so it cannot answer {task} questions")
    wrong = [s for s in samples if len(s.images) != model.num_images]
    if wrong:
        raise ValueError(f"model '{model.recipe.name}' reads {model.num_images} image(s) per sample, but "
                         f"{len(wrong)} {task} samples have {len(wrong[0].images)} (e.g. {wrong[0].id})")
    spec.check_references(samples)  # a bad reference is a data error: fail before generating
    overrides = model.recipe.prompts if prompts is None else prompts
    asked = [with_prompt_overrides(s, overrides) for s in samples]

    texts: list[str] = []
    changed: dict[str, int] = {}
    confusion = MaskConfusion() if model.mask_heads else None
    if _native(model):
        confusion, changed = _native_masks(model, asked, progress)
    batches = _generate(model, asked, batch_size=batch_size, max_new_tokens=max_new_tokens, progress=progress,
                        desc=f"eval {task}")
    for batch, batch_texts, masks in batches:
        _update_confusion(confusion, batch, masks)
        texts += batch_texts
        if masks is not None:
            changed.update({i: int(m.sum()) for i, m in zip(batch.ids, masks, strict=True)})
    scored = spec.score(asked, texts, normalized_coords=normalized_coords)
    metrics = {**scored.metrics, **_score(asked, None, confusion)}
    predictions = []
    for i, sample in enumerate(asked):
        row = {"id": sample.id, "prompt": sample.prompt[-1].text, "prediction": texts[i],
               "references": list(sample.references) or ([sample.answer] if sample.answer else []),
               "parsed": scored.parsed[i], "correct": scored.correct[i]}  # fmt: skip
        if sample.id in changed:
            row["changed_pixels"] = changed[sample.id]
        predictions.append(row)
    return Evaluation(metrics, predictions)


def evaluate_mask_task(model, samples: list[Sample], *, batch_size: int = 16, progress: bool = True) -> Evaluation:
    """Score the model's change masks alone (`rsforge eval --task change_mask`): the samples with a mask,
    at the recipe's `eval.mask_resolution`."""
    if not model.mask_heads:
        raise ValueError(f"model '{model.recipe.name}' has no mask head, so it cannot be scored on change masks")
    pairs = mask_samples(samples)
    if not pairs:
        raise ValueError("no before/after pairs with a change mask to score")
    if _native(model):
        confusion, changed = _native_masks(model, pairs, progress)
    else:
        confusion, changed = MaskConfusion(), {}
        for batch, _texts, masks in _generate(model, pairs, batch_size=batch_size, progress=progress,
                                              desc="eval change_mask", texts=False):
            _update_confusion(confusion, batch, masks)
            changed.update({i: int(m.sum()) for i, m in zip(batch.ids, masks, strict=True)})
    predictions = [{"id": s.id, "mask": s.mask, "changed_pixels": changed[s.id]} for s in pairs]
    return Evaluation(_score(pairs, None, confusion), predictions)


def load_eval_samples(
    plugins: PluginManager, split: str, *, recipe: str | Path | None = None, fmt: str | None = None,
    root: str | Path | None = None,
) -> list[Sample]:
    """The samples of `split` from a recipe YAML's `data` section, or from the registered dataset reader
    `fmt` reading the folder `root`."""
    from rsforge.core.recipe import load_recipe
    from rsforge.datasets.loading import load_split

    if (recipe is None) == (fmt is None):
        raise ValueError("give either a recipe (--data) or a dataset format with its root (--format, --root)")
    if recipe is not None:
        return load_split(load_recipe(recipe, plugins.registry), plugins, split)
    spec = plugins.registry.get("dataset", fmt, path="--format")
    if "root" not in spec.config.model_fields:
        raise ValueError(f"dataset '{fmt}' takes no root folder; describe it in a recipe's data section instead")
    if root is None:
        raise ValueError(f"--format {fmt} needs --root, the dataset folder")
    config = spec.config.model_validate({"name": fmt, "root": str(root)})
    return spec.load_factory()(config, split)


def select_task(samples: list[Sample], task: str, limit: int | None = None) -> list[Sample]:
    """The samples of `task` (the first `limit` of them); a ValueError lists the tasks there are."""
    chosen = [s for s in samples if s.task == task]
    if not chosen:
        found = Counter(s.task for s in samples)
        listing = ", ".join(f"{t} ({n})" for t, n in sorted(found.items())) or "no samples at all"
        raise ValueError(f"no {task} samples in the data; found: {listing}")
    return chosen[:limit] if limit is not None else chosen


def _cell(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def metrics_table(metrics: Mapping[str, Mapping[str, float]]) -> str:
    """A markdown table, one row per metric: | group | metric | value |."""
    lines = ["| group | metric | value |", "|---|---|---:|"]
    for group, values in metrics.items():
        lines += [f"| {group} | {name} | {_cell(value)} |" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def write_evaluation(out_dir: str | Path, evaluation: Evaluation, info: Mapping[str, object]) -> Path:
    """Write `metrics.json` (`info` + metrics), `metrics.md` and `predictions.jsonl` into `out_dir`."""
    out = Path(out_dir)
    atomic_write_text(out / "metrics.json", json.dumps({**info, "metrics": evaluation.metrics}, indent=2) + "\n")
    atomic_write_text(out / "metrics.md", metrics_table(evaluation.metrics))
    atomic_write_text(out / "predictions.jsonl", "".join(json.dumps(row) + "\n" for row in evaluation.predictions))
    return out


def most_frequent_answer(samples: list[Sample]) -> str | None:
    counts = Counter(s.answer for s in samples if s.answer)
    return counts.most_common(1)[0][0] if counts else None


def evaluate_baselines(model, train: list[Sample], samples: list[Sample]) -> dict[str, dict]:
    """The trivial predictors, by name, scored on what the model is scored on: the most frequent training
    answer everywhere (a model with a decoder; the most frequent training label for a classification
    head), the all-zero and the all-changed mask (a model with a mask head, at its `eval.mask_resolution`)."""
    baselines: dict[str, dict] = {}
    answer = most_frequent_answer(train) if model.decoder is not None else None
    if answer is not None:
        scored = _score(samples, {s.id: answer for s in samples}, None)
        if scored:
            baselines[MOST_FREQUENT] = scored
    majority = majority_label_accuracy(model, train, samples)
    if majority:
        baselines.setdefault(MOST_FREQUENT, {}).update(majority)
    if model.mask_heads:
        baselines.update(mask_baselines(samples, resolution=model.recipe.eval.mask_resolution,
                                        image_size=model.image_size))
    return baselines
