"""Training views of a sample: a random crop in native pixels and the recipe's `train.augment`.

Everything here is torchvision's `transforms.v2` on `tv_tensors`: the dates travel as one `Image`
(T, C, H, W), the change mask as a `Mask` and boxes as `BoundingBoxes`, so one call moves them all by
the same crop, flip, rotation and rescale (masks resampled nearest-neighbour, boxes recomputed by
torchvision). Photometric changes come after, drawn for each date on its own.

Multispectral views (C != 3 bands) take the geometric steps, gamma and blur as RGB ones do, and of the
colour jitter only brightness and contrast (`BandJitter`, every band alike): saturation and hue are
defined on RGB alone, so asking for them with C bands is an error, not a silent no-op.

Draws are made under a forked RNG seeded from (recipe seed, epoch, sample index) alone (`draw_seed`):
a sample gets the same view whichever worker reads it, in whatever order, after a resume too, and the
global generators that dropout and sampling use are left as they were.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from rsforge.core.recipe import AugmentConfig

MODES = {
    "bilinear": v2.InterpolationMode.BILINEAR,
    "bicubic": v2.InterpolationMode.BICUBIC,
    "nearest": v2.InterpolationMode.NEAREST,
}
# `scale` crops are square, so a native pixel stays square in the model's square input
SQUARE = (1.0, 1.0)


def draw_seed(seed: int, epoch: int, index: int) -> int:
    """A 64-bit seed for one sample's view in one epoch, well mixed (neighbouring indices and epochs
    give unrelated streams)."""
    return int(np.random.SeedSequence([seed % 2**63, epoch, index]).generate_state(1, np.uint64)[0])


class RandomGamma(v2.Transform):
    """Gamma drawn uniformly in `gamma` = (min, max); v2 has the function, not the random transform."""

    _transformed_types = (tv_tensors.Image,)

    def __init__(self, gamma: tuple[float, float]) -> None:
        super().__init__()
        self.gamma = gamma

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"gamma": torch.empty(1).uniform_(*self.gamma).item()}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return v2.functional.adjust_gamma(inpt, params["gamma"])


def _geometric(image_size: int, mode: v2.InterpolationMode, crop: int | None,
               augment: AugmentConfig | None) -> list[v2.Transform]:
    steps: list[v2.Transform] = [v2.RandomCrop(crop)] if crop is not None else []
    if augment is not None:
        if augment.hflip:
            steps.append(v2.RandomHorizontalFlip(augment.hflip))
        if augment.vflip:
            steps.append(v2.RandomVerticalFlip(augment.vflip))
        if augment.rot90:
            # exact quarter turns (expand: a non-square view turns whole); RandomChoice draws uniformly
            steps.append(v2.RandomChoice([v2.RandomRotation((a, a), expand=True) for a in (0, 90, 180, 270)]))
        if augment.scale is not None:
            steps.append(v2.RandomResizedCrop(image_size, scale=augment.scale, ratio=SQUARE, interpolation=mode))
    # to the model's input (a no-op after `scale`): masks nearest-neighbour, images antialiased
    steps.append(v2.Resize((image_size, image_size), interpolation=mode))
    return steps


class BandJitter(v2.Transform):
    """Brightness and contrast for any number of bands (torchvision's take 1 or 3): brightness scales every
    band by b in [1 - `brightness`, 1 + `brightness`]; contrast blends the image with its mean over all
    bands and pixels by c in [1 - `contrast`, 1 + `contrast`] (ColorJitter's blend with the grey mean,
    without the RGB-only grey). Brightness first, then contrast."""

    _transformed_types = (tv_tensors.Image,)

    def __init__(self, brightness: float, contrast: float) -> None:
        super().__init__()
        self.brightness, self.contrast = brightness, contrast

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        draw = torch.empty(2)
        draw[0].uniform_(max(0.0, 1 - self.brightness), 1 + self.brightness)
        draw[1].uniform_(max(0.0, 1 - self.contrast), 1 + self.contrast)
        return {"brightness": draw[0].item(), "contrast": draw[1].item()}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        bright = (inpt * params["brightness"]).clamp(0, 1)
        mean = bright.mean(dim=(-3, -2, -1), keepdim=True)
        return (params["contrast"] * bright + (1 - params["contrast"]) * mean).clamp(0, 1)


def _photometric(augment: AugmentConfig | None, channels: int) -> list[v2.Transform]:
    if augment is None:
        return []
    steps: list[v2.Transform] = []
    if channels != 3 and (augment.saturation or augment.hue):
        raise ValueError(f"train.augment: saturation and hue are RGB colour changes; the model takes {channels} "
                         "bands (brightness, contrast, gamma and blur apply to any number)")
    if channels != 3 and (augment.brightness or augment.contrast):
        steps.append(BandJitter(augment.brightness, augment.contrast))
    elif augment.brightness or augment.contrast or augment.saturation or augment.hue:
        steps.append(v2.ColorJitter(augment.brightness, augment.contrast, augment.saturation, augment.hue))
    if augment.gamma is not None:
        steps.append(RandomGamma(augment.gamma))
    if augment.blur is not None:
        kernel = 2 * math.ceil(3 * augment.blur[1]) + 1  # +-3 sigma of the widest blur
        steps.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=augment.blur)], p=augment.blur_p))
    return steps


class TrainingView:
    """`view(images, mask, boxes, seed=...)`: (T, C, H, W) dates in [0, 1] at native size, an (H, W)
    mask and (N, 4) x1 y1 x2 y2 boxes or (N, 8) polygons in their pixels -> the same at `image_size` x
    `image_size`, after a random `crop` (native pixels) and the geometric then photometric parts of
    `augment`; `channels`: C (photometric changes for C != 3: module docstring)."""

    def __init__(self, image_size: int, interpolation: str = "bilinear", crop: int | None = None,
                 augment: AugmentConfig | None = None, *, channels: int = 3) -> None:
        self.crop = crop
        self.geometric = v2.Compose(_geometric(image_size, MODES[interpolation], crop, augment))
        photometric = _photometric(augment, channels)
        self.photometric = v2.Compose(photometric) if photometric else None
        # what moves pixels besides the resize every sample gets anyway
        self.moves_pixels = len(self.geometric.transforms) > 1
        # what may cut objects out of the view (flips and quarter turns keep every pixel)
        self.cuts = crop is not None or (augment is not None and augment.scale is not None)

    def __call__(self, images: torch.Tensor, mask: torch.Tensor | None = None, boxes: torch.Tensor | None = None,
                 *, seed: int, name: str = "image") -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        height, width = images.shape[-2:]
        if self.crop is not None and (height < self.crop or width < self.crop):
            # padding would feed the model pixels that do not exist, labelled "no change" by the mask
            raise ValueError(f"{name}: image is {width}x{height}, smaller than train.crop = {self.crop}; "
                             "use a crop no larger than the smallest image side")
        if mask is not None and tuple(mask.shape[-2:]) != (height, width):
            raise ValueError(f"{name}: mask is {mask.shape[-1]}x{mask.shape[-2]}, image {width}x{height}")
        inputs: dict[str, Any] = {"images": tv_tensors.Image(images)}
        if mask is not None:
            inputs["mask"] = tv_tensors.Mask(mask)
        if boxes is not None:  # axis-aligned boxes, or DOTA's 4-corner polygons
            fmt = "XYXY" if boxes.shape[-1] == 4 else "XYXYXYXY"
            inputs["boxes"] = tv_tensors.BoundingBoxes(boxes, format=fmt, canvas_size=(height, width))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = self.geometric(inputs)
            views = out["images"].as_subclass(torch.Tensor)
            if self.photometric is not None:
                views = torch.stack([self.photometric(tv_tensors.Image(v)).as_subclass(torch.Tensor) for v in views])
        plain = {k: v.as_subclass(torch.Tensor) for k, v in out.items() if k != "images"}
        return views.clamp(0, 1), plain.get("mask"), plain.get("boxes")
