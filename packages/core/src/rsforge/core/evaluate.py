"""Evaluate a model on a split: captions through pycocoevalcap, masks through an accumulated confusion.

Also scores the trivial baseline (the most frequent training answer for every sample, an all-zero
mask) with the same code, so a report can show both side by side.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from rsforge.core.data.schema import Sample
from rsforge.core.data.torch_dataset import SampleDataset, collate
from rsforge.core.metrics.captions import caption_metrics, caption_metrics_by_group
from rsforge.core.metrics.masks import MaskConfusion


@dataclass
class Evaluation:
    metrics: dict[str, dict[str, float]]
    predictions: list[dict] = field(default_factory=list)


def _groups(samples: list[Sample]) -> dict[str, str]:
    return {s.id: "changed" if s.changed else "unchanged" for s in samples if s.changed is not None}


def _score(samples: list[Sample], answers: dict[str, str], confusion: MaskConfusion | None) -> dict:
    metrics: dict[str, dict[str, float]] = {}
    with_refs = [s for s in samples if s.references]
    if with_refs:
        refs = {s.id: s.references for s in with_refs}
        preds = {s.id: answers[s.id] for s in with_refs}
        groups = _groups(with_refs)
        if groups:
            by_group = caption_metrics_by_group(preds, refs, groups)
        else:
            by_group = {"all": caption_metrics(preds, refs)}
        metrics.update({f"captions/{g}": v for g, v in by_group.items()})
    if confusion is not None:
        metrics["mask"] = confusion.compute()
    return metrics


@torch.no_grad()
def evaluate(
    model, samples: list[Sample], *, batch_size: int = 16, max_new_tokens: int = 32, progress: bool = True
) -> Evaluation:
    model.eval()
    loader = DataLoader(SampleDataset(samples, model.image_size), batch_size=batch_size, collate_fn=collate)
    answers: dict[str, str] = {}
    predictions: list[dict] = []
    confusion = MaskConfusion() if len(model.heads) else None
    for batch in tqdm(loader, desc="evaluate", unit="batch", disable=not progress):
        texts = (model.generate(batch["images"], batch["prompts"], max_new_tokens=max_new_tokens)
                 if model.decoder is not None else [""] * len(batch["ids"]))
        masks = None
        if confusion is not None and batch["masks"] is not None:
            masks = model.predict_mask(batch["images"][:, 0], batch["images"][:, 1])
            valid = batch["mask_valid"]
            confusion.update(masks[valid], batch["masks"][valid] > 0.5)
        for i, sample_id in enumerate(batch["ids"]):
            answers[sample_id] = texts[i]
            row = {"id": sample_id, "prediction": texts[i], "references": batch["references"][i]}
            if masks is not None:
                row["changed_pixels"] = int(masks[i].sum())
            predictions.append(row)
    return Evaluation(_score(samples, answers, confusion), predictions)


def most_frequent_answer(samples: list[Sample]) -> str:
    counts = Counter(s.answer for s in samples if s.answer)
    if not counts:
        raise ValueError("no training answers to take the most frequent one from")
    return counts.most_common(1)[0][0]


def evaluate_baseline(train: list[Sample], samples: list[Sample], *, image_size: int, masks: bool) -> Evaluation:
    """The trivial model: the most frequent training answer everywhere, and no change anywhere."""
    answer = most_frequent_answer(train)
    confusion = None
    if masks:
        confusion = MaskConfusion()
        loader = DataLoader(SampleDataset(samples, image_size), batch_size=64, collate_fn=collate)
        for batch in loader:
            if batch["masks"] is not None:
                target = batch["masks"][batch["mask_valid"]] > 0.5
                confusion.update(torch.zeros_like(target), target)
    return Evaluation(_score(samples, {s.id: answer for s in samples}, confusion))
