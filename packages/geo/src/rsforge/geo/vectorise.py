"""Masks to GeoJSON: the one place a change mask becomes polygons (`rsforge detect --geojson`, the
serve API's `format: geojson`).

A polygon per 4-connected region of equal non-zero value (`rasterio.features.shapes`), property
`value`: 255 for change in a 0/255 mask, else the class id. Coordinates are map coordinates through
`transform` (an `affine.Affine`, or a GDAL-order tuple as in `RasterInfo.transform`), pixels (x right,
y down) without one. Needs rasterio (`pip install 'rsforge-geo[rasterio]'`), imported only when a mask
is vectorised, so importing this module is cheap.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

import numpy as np

RASTERIO_HINT = "vectorising a mask needs rasterio: pip install 'rsforge-geo[rasterio]'"
# What `rasterio.features.shapes` reads; other integer masks are narrowed to int32 when they fit.
_SHAPE_DTYPES = (np.uint8, np.int16, np.uint16, np.int32, np.float32)


def _shapes():
    try:
        from rasterio.features import shapes
    except ImportError as exc:
        raise ImportError(RASTERIO_HINT) from exc
    return shapes


def _vectorisable(mask: np.ndarray) -> np.ndarray:
    """A bool mask as 0/255 uint8; another dtype `shapes` cannot read as int32 (class ids)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask to vectorise is (H, W), got shape {mask.shape}")
    if mask.dtype == np.bool_:
        return mask.astype(np.uint8) * np.uint8(255)
    if mask.dtype.type in _SHAPE_DTYPES:
        return mask
    if np.issubdtype(mask.dtype, np.integer):
        limits = np.iinfo(np.int32)
        if not mask.size or (limits.min <= mask.min() and mask.max() <= limits.max):
            return mask.astype(np.int32)
    raise ValueError(f"cannot vectorise a {mask.dtype} mask: use uint8 (0/255 or class ids) or int32")


def _affine(transform: Any):
    from affine import Affine

    if transform is None:
        return Affine.identity()
    if isinstance(transform, Affine):
        return transform
    return Affine.from_gdal(*transform)  # GDAL order: x0, dx, rx, y0, ry, dy


def mask_features(mask: np.ndarray, transform: Any = None) -> Iterator[dict[str, Any]]:
    """GeoJSON Features, one polygon per region of the non-zero pixels of the (H, W) `mask`, as they
    come (a large scene's polygons need not all be held at once)."""
    shapes = _shapes()
    mask = _vectorisable(mask)
    for geometry, value in shapes(mask, mask=mask > 0, transform=_affine(transform)):
        yield {"type": "Feature", "properties": {"value": int(value)}, "geometry": geometry}


def _collection_header(crs: str | None) -> dict[str, Any]:
    header: dict[str, Any] = {"type": "FeatureCollection"}
    if crs:
        # The CRS is named (GeoJSON's old `crs` member) since map units are rarely WGS 84 here.
        header["crs"] = {"type": "name", "properties": {"name": crs}}
    return header


def mask_geojson(mask: np.ndarray, transform: Any = None, crs: str | None = None) -> dict[str, Any]:
    """The (H, W) `mask` as a GeoJSON FeatureCollection (see `mask_features`), naming `crs` if given."""
    return {**_collection_header(crs), "features": list(mask_features(mask, transform))}


def write_feature_collection(features: Iterable[dict[str, Any]], file: TextIO, crs: str | None = None) -> int:
    """Write a FeatureCollection of `features` to `file` one feature at a time; returns their count."""
    file.write(json.dumps(_collection_header(crs))[:-1] + ', "features": [\n')
    count = 0
    for feature in features:
        file.write((",\n" if count else "") + json.dumps(feature))
        count += 1
    file.write("\n]}\n")
    return count

