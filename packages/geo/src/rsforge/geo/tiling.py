"""Tiled change detection over scenes of any size, with bounded memory.

The scene is cut into `tile` x `tile` windows every `tile - overlap` pixels; the last row and column
of tiles are moved back to end exactly at the image edge, so every pixel is covered, edges included,
whatever the size. Each tile's probabilities are weighted by a window that ramps linearly up over
the `overlap` pixels at each side (never to zero: a pixel covered once still counts) and summed; the
sum divided by the summed weights is the blended probability, so seams between tiles fade out
instead of showing as lines.

Memory: tiles are processed one strip (a row of tiles) at a time. Only the strip's pixels of both
dates and a `tile`-row accumulator of the full width are held; the rows that no later strip touches
are thresholded and written out after each strip. Peak memory thus grows with the scene's width,
never with its area.

A tile whose size differs from `model.image_size` is resized to it (the model's own interpolation)
and the logits resized back. The default tile is the scale the model was trained at (`model.tile`: the
native pixels of its training crops), else `model.image_size`, which needs no resizing. A scene
smaller than a tile is padded by edge replication.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from rsforge.core.masks import mask_probabilities, mask_to_uint8, probabilities_to_mask
from rsforge.geo.rasters import MaskWriter, RasterInfo, RasterReader, check_same_grid

DEFAULT_OVERLAP = 32


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets along one axis: every `stride`, the last one at `length - tile` (0 when the axis is
    shorter than a tile)."""
    if tile < 1 or not 0 < stride <= tile:
        raise ValueError(f"need tile >= 1 and 0 < stride <= tile, got tile={tile}, stride={stride}")
    if length <= tile:
        return [0]
    return [*range(0, length - tile, stride), length - tile]


def window_weight(tile: int, overlap: int) -> np.ndarray:
    """(tile, tile) blending weight: 1 inside, a linear ramp over `overlap` pixels at each side, its
    smallest value 1 / (overlap + 1) rather than 0."""
    ramp = np.ones(tile, np.float32)
    if overlap > 0:
        rise = np.arange(1, overlap + 1, dtype=np.float32) / (overlap + 1)
        n = min(overlap, tile // 2)
        ramp[:n] = rise[:n]
        ramp[tile - n :] = np.minimum(ramp[tile - n :], rise[:n][::-1])
    return np.outer(ramp, ramp)


@dataclass
class DetectStats:
    width: int
    height: int
    changed: int  # pixels of any change class
    pixel_area: float | None  # map units² of one pixel, None when not georeferenced
    crs: str | None
    tiles: int

    @property
    def share(self) -> float:
        return self.changed / (self.width * self.height)

    @property
    def area(self) -> float | None:
        return None if self.pixel_area is None else self.changed * self.pixel_area

    def summary(self) -> str:
        text = f"changed pixels: {self.changed} of {self.width * self.height} ({100 * self.share:.2f}%)"
        if self.area is not None:
            text += f"; changed area: {self.area:.6g} map units²"
        return text


class TiledPredictor:
    """Blended probabilities (K, H, W) of a model over a scene, strip by strip (module docstring).

    `model` needs `image_size` and `mask_logits(images (B, 2, 3, S, S), instructions) -> (B, K, S, S)`;
    `prompt` is every tile's instruction for a text-guided mask head (None: the head's own default)."""

    def __init__(self, model, *, tile: int | None = None, overlap: int | None = None, batch: int = 8,
                 prompt: str | None = None) -> None:
        self.model, self.prompt = model, prompt
        self.size = int(model.image_size)
        self.tile = tile or int(getattr(model, "tile", self.size))
        if overlap is None:  # 32 px, but no more than a quarter of a small tile
            overlap = min(DEFAULT_OVERLAP, self.tile // 4)
        if not 0 <= overlap < self.tile:
            raise ValueError(f"overlap must be in [0, tile) = [0, {self.tile}), got {overlap}")
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.overlap, self.batch = overlap, batch
        self.stride = self.tile - overlap
        self.weight = torch.from_numpy(window_weight(self.tile, overlap))
        self.mode = getattr(model, "interpolation", "bilinear")

    def _probs(self, tiles: torch.Tensor) -> torch.Tensor:
        """(N, 2, 3, t, t) -> probabilities (N, K, t, t)."""
        n, t = tiles.shape[0], self.tile
        images = tiles
        if t != self.size:
            kwargs = {} if self.mode == "nearest" else {"align_corners": False, "antialias": t > self.size}
            flat = F.interpolate(tiles.flatten(0, 1), size=(self.size, self.size), mode=self.mode, **kwargs)
            images = flat.clamp(0, 1).unflatten(0, (n, 2))  # bicubic may overshoot
        with torch.no_grad():
            logits = self.model.mask_logits(images, None if self.prompt is None else [self.prompt] * n).float()
        if t != self.size:
            logits = F.interpolate(logits, size=(t, t), mode="bilinear", align_corners=False)
        return mask_probabilities(logits)

    def strips(
        self, before: RasterReader, after: RasterReader, progress: tqdm | None = None
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """(first row, blended probabilities (K, rows, W)) for consecutive row blocks covering the scene."""
        width, height, t = before.info.width, before.info.height, self.tile
        rows, cols = tile_starts(height, t, self.stride), tile_starts(width, t, self.stride)
        # A scene narrower or shorter than a tile is padded to it; the padding is cut off again below.
        padded_w = max(width, t)
        acc: torch.Tensor | None = None
        wsum = torch.zeros(t, padded_w)
        for i, r in enumerate(rows):
            h = min(t, height - r)
            pair = [torch.from_numpy(_pad(src.read(r, 0, h, width), t)).permute(2, 0, 1) for src in (before, after)]
            strip = torch.stack(pair)  # (2, C, t, padded_w)
            for j in range(0, len(cols), self.batch):
                starts = cols[j : j + self.batch]
                tiles = torch.stack([strip[..., c : c + t] for c in starts])
                probs = self._probs(tiles)
                if acc is None:
                    acc = torch.zeros(probs.shape[1], t, padded_w)
                for c, p in zip(starts, probs, strict=True):
                    acc[:, :, c : c + t] += p * self.weight
                    wsum[:, c : c + t] += self.weight
                if progress is not None:
                    progress.update(len(starts))
            # Rows above the next strip's first row are final; the rest carry over, shifted up.
            done = (rows[i + 1] if i + 1 < len(rows) else height) - r
            yield r, acc[:, :done, :width] / wsum[:done, :width]
            acc = torch.cat([acc[:, done:], acc.new_zeros(acc.shape[0], done, padded_w)], dim=1)
            wsum = torch.cat([wsum[done:], wsum.new_zeros(done, padded_w)])

    def tile_count(self, width: int, height: int) -> int:
        return len(tile_starts(width, self.tile, self.stride)) * len(tile_starts(height, self.tile, self.stride))


def _pad(array: np.ndarray, tile: int) -> np.ndarray:
    """Edge-replicate (h, w, C) up to at least tile x tile."""
    h, w = array.shape[:2]
    if h >= tile and w >= tile:
        return array
    return np.pad(array, ((0, max(0, tile - h)), (0, max(0, tile - w)), (0, 0)), mode="edge")


def to_mask(probs: torch.Tensor, threshold: float) -> np.ndarray:
    """Blended (K, h, w) probabilities -> uint8 (h, w): 0/255 for K = 1, class ids for K > 1, by the
    kernel's rule (`rsforge.core.masks`)."""
    return mask_to_uint8(probabilities_to_mask(probs[None], threshold)[0]).numpy()


def detect(
    model,
    before: str | Path,
    after: str | Path,
    out: str | Path,
    *,
    tile: int | None = None,
    overlap: int | None = None,
    batch: int = 8,
    threshold: float = 0.5,
    prompt: str | None = None,
    progress: bool = True,
) -> DetectStats:
    """Write the change mask of `before` -> `after` to `out` (see the module docstring) and return the
    changed-area statistics. The two inputs must share size, CRS and geotransform; the output keeps
    the before image's. `prompt`: what a text-guided mask head looks for."""
    predictor = TiledPredictor(model, tile=tile, overlap=overlap, batch=batch, prompt=prompt)
    channels = int(getattr(model, "in_chans", 3))  # a multispectral model reads every band of the scene
    with RasterReader(before, channels=channels) as a, RasterReader(after, channels=channels) as b:
        check_same_grid(a.info, b.info)
        info: RasterInfo = a.info
        tiles = predictor.tile_count(info.width, info.height)
        changed = 0
        bar = tqdm(total=tiles, desc=f"detect {Path(before).name}", unit="tile", disable=not progress)
        with bar, MaskWriter(out, info) as writer:
            for row, probs in predictor.strips(a, b, bar):
                block = to_mask(probs, threshold)
                changed += int(np.count_nonzero(block))
                writer.write(row, block)
    return DetectStats(info.width, info.height, changed, info.pixel_area, info.crs, tiles)
