"""Change masks scored at the dataset's native resolution, and the trivial masks to beat.

`evaluate_masks` reads each pair whole at its own size and predicts it with the tiled, blended inference
of `rsforge detect` (`rsforge.geo.scenes`), in tiles of the model's recorded scale (`model.tile`: the
native pixels per input side it was trained on), so a 1024x1024 LEVIR-CD tile of a model trained on
256-pixel crops is scored pixel by pixel against its label, as published results are. The
`"model"` resolution instead squashes pair and label to the model's input size (fast, and the only
choice for a model that was trained on whole squashed images).

`mask_baselines` scores the all-zero mask (no change anywhere: the best overall accuracy a trivial
predictor gets) and the all-changed mask (change everywhere: the best F1 and IoU a trivial predictor
gets, 2p / (1 + p) and p for a changed share p) with the same confusion counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from tqdm.auto import tqdm

from rsforge.core.masks import probabilities_to_mask
from rsforge.core.sample import Sample
from rsforge.datasets.images import load_image
from rsforge.datasets.torch_dataset import read_sample_mask
from rsforge.geo.scenes import scene_probabilities
from rsforge.tasks.metrics.masks import MaskConfusion

Resolution = Literal["native", "model"]
ALL_ZERO, ALL_CHANGED = "all-zero mask", "all-changed mask"


def mask_samples(samples: Sequence[Sample]) -> list[Sample]:
    """The before/after pairs that have a reference mask (binary, or K-class in `meta["class_mask"]`)."""
    return [s for s in samples if (s.mask or s.meta.get("class_mask")) and len(s.images) == 2]


def _update(confusion: MaskConfusion, sample: Sample, pred: torch.Tensor, target: torch.Tensor) -> None:
    if target.dtype == torch.int64:  # class ids, scored per class with the sample's class table
        confusion.update_classes(pred, target, [c["name"] for c in sample.meta["mask_classes"]])
    else:
        confusion.update(pred, target > 0.5)


@torch.no_grad()
def evaluate_masks(
    model, samples: Sequence[Sample], *, tile: int | None = None, overlap: int | None = None, batch: int = 8,
    threshold: float = 0.5, progress: bool = True,
) -> tuple[MaskConfusion, list[int]]:
    """The confusion counts of the model's masks over `samples` at native resolution, and each sample's
    number of predicted changed pixels (of any class). `tile`: native pixels per model input (default
    `model.tile`)."""
    model.eval()
    confusion, changed = MaskConfusion(), []
    tile = tile or model.tile
    for sample in tqdm(samples, desc="masks at native resolution", unit="pair", disable=None if progress else True):
        before, after = (load_image(path, interpolation=model.interpolation, channels=model.in_chans)
                         for path in sample.images)
        target = read_sample_mask(sample)
        if target.shape != before.shape[1:]:
            raise ValueError(f"sample {sample.id}: its mask is {tuple(target.shape)} but the image is "
                             f"{tuple(before.shape[1:])}")
        probs = scene_probabilities(model, before, after, tile=tile, overlap=overlap, batch=batch, name=sample.id,
                                    prompt=sample.prompt[0].text)
        pred = probabilities_to_mask(probs[None], threshold)[0]
        _update(confusion, sample, pred, target)
        changed.append(int(torch.count_nonzero(pred)))
    return confusion, changed


def mask_baselines(samples: Sequence[Sample], *, resolution: Resolution, image_size: int) -> dict[str, dict]:
    """`{ALL_ZERO: {"mask": metrics}, ALL_CHANGED: {"mask": metrics}}` over the samples' masks (as binary
    change: any class but 0), read at native resolution or at `image_size` as the model's masks are
    scored; empty without masks."""
    pairs = mask_samples(samples)
    if not pairs:
        return {}
    zero, everywhere = MaskConfusion(), MaskConfusion()
    for sample in pairs:
        target = read_sample_mask(sample, None if resolution == "native" else image_size) > 0.5
        zero.update(torch.zeros_like(target), target)
        everywhere.update(torch.ones_like(target), target)
    return {ALL_ZERO: {"mask": zero.compute()}, ALL_CHANGED: {"mask": everywhere.compute()}}
