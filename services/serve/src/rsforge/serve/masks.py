"""`POST /v1/change/detect`: request parsing and the answer (a PNG or GeoJSON mask and area statistics).

The request is JSON: `{"model": NAME, "before": URL, "after": URL, "format": "png" | "geojson",
"threshold": 0.5}` with the images as base64 data URLs (as in chat requests), decoded by `images` as
chat images are. GeoJSON comes from `rsforge.geo.vectorise`, the vectoriser `rsforge detect` uses.
Pure Python + numpy: tested without Ray.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from rsforge.geo.vectorise import mask_geojson
from rsforge.serve.client import data_url
from rsforge.serve.errors import APIError
from rsforge.serve.images import Fetch, url_image
from rsforge.serve.limits import DEFAULT_MAX_IMAGE_PIXELS

FORMATS = ("png", "geojson")
_FIELDS = {"model", "before", "after", "format", "threshold"}


@dataclass(frozen=True)
class DetectRequest:
    model: str
    images: torch.Tensor  # (2, 3, S, S): before, after
    format: str
    threshold: float


def parse_detect_request(
    body: Any, *, model_name: str, image_size: int, interpolation: str = "bilinear", fetch: Fetch | None = None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> DetectRequest:
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object")
    for key in body:
        if key not in _FIELDS:
            raise APIError(400, f"unrecognized request argument: '{key}' (expected {sorted(_FIELDS)})", param=key)
    fmt = body.get("format", "png")
    if fmt not in FORMATS:
        raise APIError(400, f"'format' must be one of {', '.join(FORMATS)}, got {fmt!r}", param="format")
    threshold = body.get("threshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold < 1:
        raise APIError(400, f"'threshold' must be a number between 0 and 1, got {threshold!r}", param="threshold")
    images = []
    for key in ("before", "after"):
        url = body.get(key)
        if not isinstance(url, str):
            raise APIError(400, f"'{key}' is required: the {key} image as a base64 data URL", param=key)
        images.append(url_image(url, key, image_size, interpolation, fetch, max_pixels))
    return DetectRequest(model_name, torch.stack(images), fmt, float(threshold))


def count_regions(mask: np.ndarray) -> int:
    """Connected regions of non-zero pixels (8-connectivity). Masks here are model-sized (tens to a few
    hundred pixels a side), so a plain flood fill is fast enough and needs no scipy."""
    seen = np.zeros(mask.shape, dtype=bool)
    height, width = mask.shape
    regions = 0
    for y, x in zip(*np.nonzero(mask), strict=True):
        if seen[y, x]:
            continue
        regions += 1
        seen[y, x] = True
        queue = deque([(y, x)])
        while queue:
            cy, cx = queue.popleft()
            for ny in range(max(cy - 1, 0), min(cy + 2, height)):
                for nx in range(max(cx - 1, 0), min(cx + 2, width)):
                    if mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
    return regions


def mask_png(mask: np.ndarray) -> str:
    """uint8 mask (0/255, or class ids) as a base64 PNG data URL."""
    return data_url(Image.fromarray(mask))


def detect_response(model: str, mask: np.ndarray, fmt: str) -> dict[str, Any]:
    """The answer to a detect request for the uint8 (H, W) `mask`."""
    changed = int(np.count_nonzero(mask))
    out: dict[str, Any] = {
        "object": "change.mask",
        "model": model,
        "width": int(mask.shape[1]),
        "height": int(mask.shape[0]),
        "stats": {
            "changed_pixels": changed,
            "changed_fraction": changed / mask.size,
            "regions": count_regions(mask),
        },
    }
    if fmt == "geojson":
        try:
            # Polygons in pixel coordinates (x right, y down): the mask has the model's input size.
            out["geojson"] = mask_geojson(mask)
        except ImportError:
            raise APIError(501, "format 'geojson' needs rasterio on the server (pip install 'rsforge-serve[geo]')",
                           param="format") from None
    else:
        out["mask_png"] = mask_png(mask)
    return out
