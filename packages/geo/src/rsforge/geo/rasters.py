"""Raster IO for tiled inference: read windows of large scenes, write the result by windows.

With rasterio installed (`pip install 'rsforge-geo[rasterio]'`), GeoTIFFs (and anything GDAL reads) are
read window by window and the output is a tiled GeoTIFF carrying the CRS and geotransform of the
input, so memory stays bounded however large the scene. Without it, images are read whole through
Pillow / tifffile (`rsforge.datasets.images`, under its pixel limit) and the output is held in memory
until it is saved: fine for PNG / JPEG tiles, which are small by nature; large scenes need rasterio.

Pixel values are scaled as in training, by the one scaling of `rsforge.datasets.images` (each band
divided by the maximum its file declares): it depends on no pixel, so every window is scaled alike,
no seam appears between strips, and a scene reads as its training crops did.
"""

from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from rsforge.core.atomic import atomic_path
from rsforge.datasets.images import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    _is_tiff,
    declared_top,
    read_bands,
    rgb_bands,
    scale_to_unit,
)

# GDAL's block cache defaults to 5% of RAM, which would let memory grow with the scene; a strip
# needs far less, so it is capped while a raster is open.
GDAL_CACHE_BYTES = 64 * 1024 * 1024
GEOTIFF_SUFFIXES = (".tif", ".tiff")
Transform = tuple[float, float, float, float, float, float]  # GDAL order: x0, dx, rx, y0, ry, dy


def has_rasterio() -> bool:
    return importlib.util.find_spec("rasterio") is not None


@dataclass(frozen=True)
class RasterInfo:
    path: str
    width: int
    height: int
    bands: int
    dtype: str
    crs: str | None  # WKT, None when not georeferenced
    transform: Transform | None  # None when not georeferenced

    @property
    def pixel_area(self) -> float | None:
        """Area of one pixel in map units² (None without a geotransform)."""
        if self.transform is None:
            return None
        _, dx, rx, _, ry, dy = self.transform
        return abs(dx * dy - rx * ry)


class RasterReader:
    """A scene opened for window reads; `read(row, col, height, width)` -> float32 (h, w, C) in [0, 1]: the
    three bands models take (`rsforge.datasets.images.load_image`'s), or with `channels` != 3 every band
    of a scene that has exactly that many (a multispectral model's `in_chans`)."""

    def __init__(self, path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, channels: int = 3) -> None:
        self.path, self.channels = str(path), channels
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such image")
        self._src = self._env = self._array = None
        if has_rasterio() and _is_tiff(self.path):
            self._open_rasterio()
        else:
            self._open_whole(max_pixels)

    def _open_rasterio(self) -> None:
        import rasterio
        from rasterio.errors import RasterioIOError

        self._env = rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES)
        self._env.__enter__()
        try:
            src = self._src = rasterio.open(self.path)
        except RasterioIOError as exc:
            self.close()
            raise ImageError(f"{self.path}: cannot open raster: {exc}") from exc
        if self.channels != 3:
            if src.count != self.channels:
                self.close()
                raise ImageError(f"{self.path}: {src.count} band(s), the model takes {self.channels}")
            self._indexes = list(range(1, src.count + 1))
        elif src.count == 2:
            self.close()
            raise ImageError(f"{self.path}: 2 bands; expected 1 (grey) or at least 3 (RGB first)")
        else:
            self._indexes = [1, 1, 1] if src.count == 1 else [1, 2, 3]
        # GDAL shows the TIFF's declared range as metadata: NBITS (packed bits), TIFFTAG_MAXSAMPLEVALUE
        nbits = src.tags(ns="IMAGE_STRUCTURE").get("NBITS")
        max_sample = src.tags().get("TIFFTAG_MAXSAMPLEVALUE")
        self._top = declared_top(src.dtypes[0], len(self._indexes), int(nbits) if nbits else None,
                                 float(max_sample) if max_sample else None)
        georef = src.crs is not None or not src.transform.is_identity
        self.info = RasterInfo(
            self.path, src.width, src.height, src.count, src.dtypes[0],
            src.crs.to_wkt() if src.crs is not None else None, src.transform.to_gdal() if georef else None,
        )  # fmt: skip

    def _open_whole(self, max_pixels: int) -> None:
        try:
            raw, top = read_bands(self.path, max_pixels, rgb=self.channels == 3)
        except ImageError as exc:
            raise ImageError(f"{exc} (install rsforge-geo[rasterio] to read large scenes window by window)") from None
        if self.channels == 3:
            self._array, self._top = rgb_bands(raw, top, self.path)
        elif raw.shape[-1] != self.channels:
            raise ImageError(f"{self.path}: {raw.shape[-1]} band(s), the model takes {self.channels}")
        else:
            self._array, self._top = raw, top
        height, width = raw.shape[:2]
        self.info = RasterInfo(self.path, width, height, raw.shape[-1], str(raw.dtype), None, None)

    def read(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        if self._array is not None:
            raw = self._array[row : row + height, col : col + width]
        else:
            from rasterio.windows import Window

            raw = self._src.read(self._indexes, window=Window(col, row, width, height)).transpose(1, 2, 0)
        return scale_to_unit(raw, self._top)

    def close(self) -> None:
        if self._src is not None:
            self._src.close()
            self._src = None
        if self._env is not None:
            self._env.__exit__(None, None, None)
            self._env = None
        self._array = None

    def __enter__(self) -> RasterReader:
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def check_same_grid(a: RasterInfo, b: RasterInfo) -> None:
    """Both dates must cover the same pixels: same size, CRS and geotransform."""
    problems = []
    if (a.width, a.height) != (b.width, b.height):
        problems.append(f"size {a.width}x{a.height} vs {b.width}x{b.height}")
    if a.crs != b.crs:
        problems.append("CRS differs" if a.crs and b.crs else "only one is georeferenced (CRS)")
    if a.transform != b.transform and not (
        a.transform and b.transform and np.allclose(a.transform, b.transform, rtol=0, atol=1e-9)
    ):
        problems.append(f"geotransform {a.transform} vs {b.transform}")
    if problems:
        raise ValueError(
            f"{a.path} and {b.path} do not cover the same grid ({'; '.join(problems)}); "
            "reproject / resample one onto the other first"
        )


class MaskWriter:
    """Writes a uint8 (H, W) result by row blocks: a tiled, compressed GeoTIFF with the reference's
    CRS and geotransform when rasterio is there and the output is .tif; otherwise the rows are kept
    in memory and saved with Pillow at `close` (H x W bytes)."""

    def __init__(self, path: str | Path, like: RasterInfo) -> None:
        self.path, self.like = Path(path), like
        # Rows go to a temporary sibling that replaces `path` only when every row is written.
        self._commit = contextlib.ExitStack()
        self._tmp = self._commit.enter_context(atomic_path(self.path))
        self._dst = self._env = self._array = None
        if has_rasterio() and self.path.suffix.lower() in GEOTIFF_SUFFIXES:
            import rasterio
            from affine import Affine

            self._env = rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES)
            self._env.__enter__()
            profile = {
                "driver": "GTiff", "width": like.width, "height": like.height, "count": 1, "dtype": "uint8",
                "compress": "deflate", "tiled": True, "blockxsize": 256, "blockysize": 256,
                # BigTIFF when needed: a 0/255 mask compresses well, but never hit the 4 GiB wall
                "BIGTIFF": "IF_SAFER",
            }  # fmt: skip
            if like.crs is not None:
                profile["crs"] = like.crs
            if like.transform is not None:
                profile["transform"] = Affine.from_gdal(*like.transform)
            self._dst = rasterio.open(self._tmp, "w", **profile)
        else:
            self._array = np.zeros((like.height, like.width), np.uint8)

    def write(self, row: int, block: np.ndarray) -> None:
        """Rows `row .. row + len(block)` of the full width."""
        if self._dst is not None:
            from rasterio.windows import Window

            self._dst.write(block[None], window=Window(0, row, block.shape[1], block.shape[0]))
        else:
            self._array[row : row + block.shape[0]] = block

    def close(self, failed: BaseException | None = None) -> None:
        """Finish the file and move it into place; after `failed`, drop it and leave `path` as it was."""
        if self._dst is not None:
            self._dst.close()
            self._dst = None
        if self._env is not None:
            self._env.__exit__(None, None, None)
            self._env = None
        if self._array is not None:
            if failed is None:
                from PIL import Image

                Image.fromarray(self._array).save(self._tmp)
            self._array = None
        if failed is None:
            self._commit.close()
        else:
            self._commit.__exit__(type(failed), failed, failed.__traceback__)

    def __enter__(self) -> MaskWriter:
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close(exc)


def mask_polygons(mask_path: str | Path, geojson_path: str | Path) -> int:
    """Vectorise the non-zero pixels of a written mask into a GeoJSON FeatureCollection (property
    `value`: 255 for change, the class id for K > 1), in map coordinates when the mask is
    georeferenced, else in pixels (x right, y down). Needs rasterio. Returns the polygon count.
    The mask is read whole (one byte a pixel), the polygons are written as they come."""
    import rasterio

    from rsforge.geo.vectorise import mask_features, write_feature_collection

    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), rasterio.open(mask_path) as src:
        mask = src.read(1)
        crs = src.crs.to_string() if src.crs is not None else None
        with atomic_path(geojson_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            return write_feature_collection(mask_features(mask, src.transform), f, crs)
