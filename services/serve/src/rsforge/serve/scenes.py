"""The change mask of a whole uploaded scene: what `rsforge detect` does, run on a request's bytes.

`POST /v1/change/detect` answers with the same tiled, blended, native-resolution inference as the
command line: the uploads go to a private temporary directory and through `rsforge.geo.tiling.detect`
itself, so a GeoTIFF is read window by window with its CRS and geotransform, and the mask written and
read back carries them (the GeoJSON is then in map coordinates, as `rsforge detect --geojson` writes
it). Runs inside the model replica, which holds the model; pure Python + torch, tested without Ray.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rsforge.datasets.images import _is_tiff
from rsforge.geo.rasters import Transform, has_rasterio
from rsforge.geo.tiling import detect

TILE_BATCH = 8  # tiles per forward pass, as `rsforge detect`'s default


class SceneError(ValueError):
    """An upload the tiled reader refuses (unreadable, two grids that differ): the client's to fix."""


@dataclass(frozen=True)
class SceneMask:
    mask: np.ndarray  # uint8 (H, W) at the scene's own resolution: 0/255, or class ids
    transform: Transform | None  # GDAL order, None when the before scene is not georeferenced
    crs: str | None  # as `rsforge detect --geojson` names it ("EPSG:32631"), None without one
    pixel_area: float | None  # map units² of one pixel
    tiles: int


class OnDevice:
    """`model` as `TiledPredictor` calls it, with CPU tensors in and out: the tiles go to the model's
    device and the logits come back."""

    def __init__(self, model, device: torch.device) -> None:
        self.model, self.device = model, device
        self.image_size, self.tile, self.interpolation = model.image_size, model.tile, model.interpolation
        self.in_chans = model.in_chans

    def mask_logits(self, images: torch.Tensor, instructions: list[str] | None = None) -> torch.Tensor:
        return self.model.mask_logits(images.to(self.device), instructions).cpu()


def detect_scene(model, before: bytes, after: bytes, *, threshold: float, prompt: str | None = None,
                 device: torch.device | str = "cpu") -> SceneMask:
    """The change mask of the `before` -> `after` uploads (image bytes: GeoTIFF, PNG, JPEG...) by
    `model`'s first mask head, tile by tile at native resolution. Raises `SceneError` for uploads the
    reader refuses, its message naming them `before` / `after`."""
    with tempfile.TemporaryDirectory(prefix="rsforge-detect-") as tmp, warnings.catch_warnings():
        # rasterio warns of a scene without georeferencing (any PNG or JPEG upload): no news here.
        warnings.filterwarnings("ignore", message="Dataset has no geotransform")
        root = Path(tmp)
        paths = []
        for name, data in (("before", before), ("after", after)):
            # The suffix only picks the reader: rasterio for TIFF, else Pillow (which sniffs the format).
            path = root / f"{name}{'.tif' if _is_tiff(data) else ''}"
            path.write_bytes(data)
            paths.append(path)
        out = root / ("mask.tif" if has_rasterio() else "mask.png")
        try:
            stats = detect(OnDevice(model, torch.device(device)), *paths, out, batch=TILE_BATCH,
                           threshold=threshold, prompt=prompt, progress=False)
        except (ValueError, OSError) as exc:  # ImageError and grid mismatches are ValueErrors, rasterio's are OSErrors
            raise SceneError(str(exc).replace(f"{root}/", "")) from None
        mask, transform, crs = _read_mask(out)
    return SceneMask(mask, transform, crs, stats.pixel_area, stats.tiles)


def _read_mask(path: Path) -> tuple[np.ndarray, Transform | None, str | None]:
    """The written mask with its georeferencing, read as `rsforge.geo.rasters.mask_polygons` reads it."""
    if path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as img:
            return np.asarray(img), None, None
    import rasterio

    with rasterio.open(path) as src:
        georeferenced = src.crs is not None or not src.transform.is_identity
        transform = src.transform.to_gdal() if georeferenced else None
        return src.read(1), transform, src.crs.to_string() if src.crs is not None else None
