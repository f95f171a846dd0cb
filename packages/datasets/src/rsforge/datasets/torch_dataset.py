"""A torch `Dataset` over `Sample`s and the collate function that batches them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from rsforge.core.batch import Batch
from rsforge.core.sample import Sample
from rsforge.datasets.images import Interpolation, load_image, load_mask


class SampleDataset(Dataset):
    """Reads a sample's images (and mask) at `image_size` x `image_size` when it is indexed.

    Item: `{"images": (T, 3, S, S) float in [0, 1], "mask": (S, S) float 0/1 or None, "sample": Sample}`.
    `interpolation`: the resampling filter for images (the encoder's choice); masks are always resized
    nearest-neighbour, which keeps them binary.
    """

    def __init__(
        self, samples: Sequence[Sample], image_size: int, interpolation: Interpolation = "bilinear"
    ) -> None:
        self.samples = list(samples)
        self.image_size = image_size
        self.interpolation = interpolation

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        images = torch.stack([load_image(path, self.image_size, interpolation=self.interpolation)
                              for path in sample.images])
        mask = load_mask(sample.mask, self.image_size) if sample.mask else None
        return {"images": images, "mask": mask, "sample": sample}


def collate(items: list[dict[str, Any]]) -> Batch:
    """Batch `SampleDataset` items (all with the same number of images T) into a `Batch`: `masks`
    (B, S, S) is None when no item has a mask, else zeros where an item has none and `mask_valid` False."""
    samples: list[Sample] = [item["sample"] for item in items]
    counts = {item["images"].shape[0] for item in items}
    if len(counts) > 1:
        listing = ", ".join(f"{s.id} ({len(s.images)})" for s in samples)
        raise ValueError(f"cannot batch samples with different numbers of images: {listing}")
    images = torch.stack([item["images"] for item in items])
    mask_valid = torch.tensor([item["mask"] is not None for item in items], dtype=torch.bool)
    masks = None
    if mask_valid.any():
        blank = torch.zeros(images.shape[-2:], dtype=torch.float32)
        masks = torch.stack([blank if item["mask"] is None else item["mask"] for item in items])
    return Batch(
        images=images,
        conversations=[s.conversation for s in samples],
        masks=masks,
        mask_valid=mask_valid,
        references=[list(s.references) for s in samples],
        ids=[s.id for s in samples],
        tasks=[s.task for s in samples],
        changed=[s.changed for s in samples],
        meta=[s.meta for s in samples],
    )
