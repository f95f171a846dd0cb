"""Scenes already in memory (a dataset's before/after pair at its native resolution) predicted with the
tiled, blended inference of `rsforge detect` (`TiledPredictor`), so an evaluation scores a model the
way it is run on whole scenes, not on a thumbnail squashed to the model's input size."""

from __future__ import annotations

import numpy as np
import torch

from rsforge.geo.rasters import RasterInfo
from rsforge.geo.tiling import TiledPredictor


class ArrayRaster:
    """A (C, H, W) image in [0, 1], read by windows as `TiledPredictor.strips` reads a `RasterReader`."""

    def __init__(self, image: torch.Tensor, name: str = "<memory>") -> None:
        if image.dim() != 3:
            raise ValueError(f"{name}: expected a (C, H, W) image, got shape {tuple(image.shape)}")
        channels, height, width = image.shape
        self.info = RasterInfo(name, width, height, channels, "float32", None, None)
        self._pixels = np.ascontiguousarray(image.permute(1, 2, 0).numpy(), dtype=np.float32)

    def read(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        return self._pixels[row : row + height, col : col + width]


def scene_probabilities(
    model, before: torch.Tensor, after: torch.Tensor, *, tile: int | None = None, overlap: int | None = None,
    batch: int = 8, name: str = "scene", prompt: str | None = None,
) -> torch.Tensor:
    """Blended change probabilities (K, H, W) of `before` -> `after` (each (3, H, W) in [0, 1]); `prompt`:
    what a text-guided mask head looks for."""
    if before.shape != after.shape:
        raise ValueError(f"{name}: the dates differ in shape: before {tuple(before.shape)}, "
                         f"after {tuple(after.shape)}")
    predictor = TiledPredictor(model, tile=tile, overlap=overlap, batch=batch, prompt=prompt)
    blocks = [probs for _, probs in predictor.strips(ArrayRaster(before, name), ArrayRaster(after, name))]
    return torch.cat(blocks, dim=1)
