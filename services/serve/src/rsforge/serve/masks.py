"""`POST /v1/change/detect`: request parsing and the answer (a PNG or GeoJSON mask and area statistics).

The request is JSON: `{"model": NAME, "before": URL, "after": URL, "format": "png" | "geojson",
"threshold": 0.5, "prompt": TEXT}` with the scenes as base64 data URLs (as in chat requests: PNG,
JPEG, or GeoTIFF with its georeferencing). Parsing checks each scene's size from its header against
`max_detect_pixels` and leaves decoding to the tiled inference (`scenes`); the mask it returns has
the scenes' own size. GeoJSON comes from `rsforge.geo.vectorise`, the vectoriser `rsforge detect`
uses, in map coordinates for a georeferenced scene. Pure Python + numpy: tested without Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from rsforge.geo.vectorise import mask_geojson
from rsforge.serve.client import data_url
from rsforge.serve.errors import APIError
from rsforge.serve.images import Fetch, data_url_bytes, header_size
from rsforge.serve.limits import DEFAULT_LIMITS, Limits, check_text
from rsforge.serve.regions import count_regions
from rsforge.serve.scenes import SceneMask

FORMATS = ("png", "geojson")
_FIELDS = {"model", "before", "after", "format", "threshold", "prompt"}


@dataclass(frozen=True)
class DetectRequest:
    model: str
    before: bytes  # the uploads as sent (decoded by the tiled reader, at native resolution)
    after: bytes
    format: str
    threshold: float
    prompt: str | None  # for text-guided mask heads; None: the recipe's change_mask prompt, else the head's default


def parse_detect_request(body: Any, *, model_name: str, fetch: Fetch | None = None,
                         limits: Limits = DEFAULT_LIMITS) -> DetectRequest:
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
    prompt = body.get("prompt")
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise APIError(400, "'prompt' must be a non-empty string: what to look for (text-guided mask heads)",
                           param="prompt")
        check_text(prompt, "prompt", limits)
    scenes, sizes = [], []
    for key in ("before", "after"):
        url = body.get(key)
        if not isinstance(url, str):
            raise APIError(400, f"'{key}' is required: the {key} image as a base64 data URL", param=key)
        data = data_url_bytes(url, key, fetch)
        width, height = header_size(data, key)
        if width * height > limits.max_detect_pixels:
            raise APIError(400, f"{key}: image is {width}x{height} ({width * height / 1e6:.1f} MP), over the limit "
                           f"of {limits.max_detect_pixels / 1e6:.1f} MP (max_detect_pixels); refused before decoding",
                           param=key)
        scenes.append(data)
        sizes.append((width, height))
    if sizes[0] != sizes[1]:
        raise APIError(400, f"'after' is {sizes[1][0]}x{sizes[1][1]} but 'before' is {sizes[0][0]}x{sizes[0][1]}: "
                       "the two dates must cover the same pixels", param="after")
    return DetectRequest(model_name, scenes[0], scenes[1], fmt, float(threshold), prompt)


def mask_png(mask: np.ndarray) -> str:
    """uint8 mask (0/255, or class ids) as a base64 PNG data URL."""
    return data_url(Image.fromarray(mask))


def detect_response(model: str, scene: SceneMask, fmt: str) -> dict[str, Any]:
    """The answer to a detect request for the `scene`'s uint8 (H, W) mask."""
    mask = scene.mask
    changed = int(np.count_nonzero(mask))
    out: dict[str, Any] = {
        "object": "change.mask",
        "model": model,
        "width": int(mask.shape[1]),
        "height": int(mask.shape[0]),
        # Where the mask lies on the map (as the before scene): a PNG mask can be placed with these.
        "crs": scene.crs,
        "transform": None if scene.transform is None else list(scene.transform),
        "stats": {
            "changed_pixels": changed,
            "changed_fraction": changed / mask.size,
            "changed_area": None if scene.pixel_area is None else changed * scene.pixel_area,
            "regions": count_regions(mask),
            "tiles": scene.tiles,
        },
    }
    if fmt == "geojson":
        try:
            # Map coordinates for a georeferenced scene, else pixels (x right, y down).
            out["geojson"] = mask_geojson(mask, scene.transform, scene.crs)
        except ImportError:
            raise APIError(501, "format 'geojson' needs rasterio on the server (pip install 'rsforge-serve[geo]')",
                           param="format") from None
    else:
        out["mask_png"] = mask_png(mask)
    return out
