"""A torch `Dataset` over `Sample`s, the sampler that moves its epoch, and the collate function that
batches them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler

from rsforge.core.batch import Batch
from rsforge.core.recipe import AugmentConfig
from rsforge.core.sample import META_LABEL, Sample, Turn
from rsforge.datasets.augment import TrainingView, draw_seed
from rsforge.datasets.images import Interpolation, load_image, load_mask
from rsforge.datasets.prompts import META_COORDINATES, META_IMAGE_SIZE, coordinates_text


def read_sample_mask(sample: Sample, size: int | None = None) -> torch.Tensor | None:
    """The sample's change mask, nearest-neighbour resized to `size`: 0/1 floats from `Sample.mask`, or
    int64 class ids from a K-class label (`meta["class_mask"]` with its class table `meta["mask_classes"]`,
    see `rsforge.datasets.semantic_change`); None when it has neither."""
    if sample.mask:
        return load_mask(sample.mask, size)
    path = sample.meta.get("class_mask")
    if not path:
        return None
    if not sample.meta.get("mask_classes"):
        raise ValueError(f"sample {sample.id}: meta has a class_mask but no mask_classes (its class table)")
    return load_mask(path, size, classes=sample.meta["mask_classes"])


class SampleDataset(Dataset):
    """Reads a sample's images (and mask) at `image_size` x `image_size` when it is indexed.

    Item: `{"images": (T, C, S, S) float in [0, 1], "mask": (S, S) or None, "sample": Sample}`, the mask as
    `read_sample_mask` reads it (0/1 floats, or class ids). `channels`: C, the bands the model takes
    (`model.in_chans`: 3 reads RGB, more reads every band of a multispectral file, see `load_image`).
    `interpolation`: the resampling filter for images (the encoder's choice); masks are always resized
    nearest-neighbour, which keeps them binary. Without `crop` and `augment` each whole image is resized
    (evaluation's view). For training, `crop` (`train.crop`) takes a random square of that many native
    pixels at one place in both dates and the mask, and `augment` (`train.augment`) changes the view
    (`rsforge.datasets.augment`), both drawn from (`seed`, epoch, index): `set_epoch` moves the epoch.
    """

    def __init__(
        self, samples: Sequence[Sample], image_size: int, interpolation: Interpolation = "bilinear", *,
        crop: int | None = None, augment: AugmentConfig | None = None, seed: int = 0, channels: int = 3,
    ) -> None:
        self.samples = list(samples)
        self.image_size = image_size
        self.interpolation = interpolation
        self.channels = channels
        self.seed, self.epoch = seed, 0
        self.view = None
        if crop is not None or augment is not None:
            self.view = TrainingView(image_size, interpolation, crop, augment, channels=channels)
        if self.view is not None and self.view.moves_pixels:
            # Flips and quarter turns move boxes, and the answer text is rewritten to match; a crop could cut
            # the named object out of the view, which no rewritten answer can mend.
            for s in self.samples:
                if s.boxes and (self.view.cuts or META_COORDINATES not in s.meta):
                    why = ("train.crop and train.augment.scale may cut it out of the view" if self.view.cuts else
                           "its meta has no `coordinates` to rewrite the answer in")
                    raise ValueError(f"sample {s.id}: its answer names boxes, and {why}; use flips, rot90 and "
                                     "photometric options with grounding data")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        if self.view is not None:
            return self._training_item(sample, index)
        images = torch.stack([load_image(path, self.image_size, interpolation=self.interpolation,
                                         channels=self.channels) for path in sample.images])
        return {"images": images, "mask": read_sample_mask(sample, self.image_size), "sample": sample}

    def _training_item(self, sample: Sample, index: int) -> dict[str, Any]:
        """Read at native resolution, then cropped, augmented and resized together."""
        dates = [load_image(path, interpolation=self.interpolation, channels=self.channels) for path in sample.images]
        sizes = {tuple(d.shape[-2:]) for d in dates}
        if len(sizes) > 1:
            shown = " vs ".join(f"{d.shape[-1]}x{d.shape[-2]}" for d in dates)
            raise ValueError(f"sample {sample.id}: its images differ in size ({shown}); a crop needs one grid")
        mask = read_sample_mask(sample)
        boxes = torch.tensor(sample.boxes, dtype=torch.float32) if sample.boxes else None
        images, mask, boxes = self.view(torch.stack(dates), mask, boxes, seed=draw_seed(self.seed, self.epoch, index),
                                        name=sample.images[0])
        if boxes is not None:
            sample = _moved_boxes(sample, boxes, self.image_size)
        return {"images": images, "mask": mask, "sample": sample}


def _moved_boxes(sample: Sample, boxes: torch.Tensor, size: int) -> Sample:
    """`sample` with its boxes as the view moved them (pixels of the `size` x `size` input) and its answer
    rewritten from them, in the coordinates the reader wrote it in."""
    moved = [[float(v) for v in box] for box in boxes.tolist()]
    answer = ", ".join(coordinates_text(box, (size, size), sample.meta[META_COORDINATES]) for box in moved)
    conversation = [*sample.conversation[:-1], Turn("assistant", answer)]
    meta = {**sample.meta, META_IMAGE_SIZE: (size, size)}
    return replace(sample, boxes=moved, conversation=conversation, references=[answer], meta=meta)


class EpochSampler(DistributedSampler):
    """A `DistributedSampler` whose `set_epoch` also reaches its `SampleDataset`, so crops and augmentation
    are drawn anew each epoch, as a function of (seed, epoch, index) alone: a resumed run redraws exactly
    what the interrupted one would have."""

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.dataset.set_epoch(epoch)


def collate(items: list[dict[str, Any]]) -> Batch:
    """Batch `SampleDataset` items (all with the same number of images T) into a `Batch`: `masks`
    (B, S, S) is None when no item has a mask, else zeros where an item has none and `mask_valid` False.

    Binary masks are 0/1 floats, K-class ones int64 class ids (`read_sample_mask`). A batch mixing the two
    kinds is an error, since one tensor cannot hold 0/1 changes and class ids at once. `labels` (B,) are
    the samples' `meta["label"]` class ids, -1 where a sample has none; None when no sample has one."""
    samples: list[Sample] = [item["sample"] for item in items]
    counts = {item["images"].shape[0] for item in items}
    if len(counts) > 1:
        listing = ", ".join(f"{s.id} ({len(s.images)})" for s in samples)
        raise ValueError(f"cannot batch samples with different numbers of images: {listing}")
    images = torch.stack([item["images"] for item in items])
    found = [item["mask"] for item in items]
    mask_valid = torch.tensor([m is not None for m in found], dtype=torch.bool)
    masks = None
    if mask_valid.any():
        kinds = {m.dtype for m in found if m is not None}
        if len(kinds) > 1:
            listing = ", ".join(f"{s.id} ({'class ids' if m.dtype == torch.int64 else 'binary'})"
                                for s, m in zip(samples, found, strict=True) if m is not None)
            raise ValueError(f"cannot batch binary and K-class change masks together: {listing}")
        blank = torch.zeros(images.shape[-2:], dtype=kinds.pop())
        masks = torch.stack([blank if m is None else m for m in found])
    labels = [int(s.meta.get(META_LABEL, -1)) for s in samples]
    return Batch(
        images=images,
        conversations=[s.conversation for s in samples],
        masks=masks,
        mask_valid=mask_valid,
        labels=torch.tensor(labels, dtype=torch.int64) if max(labels) >= 0 else None,
        references=[list(s.references) for s in samples],
        ids=[s.id for s in samples],
        tasks=[s.task for s in samples],
        changed=[s.changed for s in samples],
        meta=[s.meta for s in samples],
    )
