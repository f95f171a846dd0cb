"""Request images: a data URL (or an allowed remote URL) -> bytes -> a model-sized tensor.

The one place both endpoints decode images: chat `image_url` parts and the change-mask `before` /
`after` fields. Decoding itself is `rsforge.datasets.images.load_image` (format sniffing, pixel
limits, resizing as in training); here only its failures become `APIError`s naming the field.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

import torch

from rsforge.datasets.images import ImageError, load_image
from rsforge.serve.errors import APIError, excerpt

MAX_IMAGE_BYTES = 20 * 1024 * 1024

# `fetch(url, where) -> bytes` reads a remote image (see `remote.py`); None refuses remote URLs.
Fetch = Callable[[str, str], bytes]


def data_url_bytes(url: str, where: str, fetch: Fetch | None = None) -> bytes:
    """The bytes of a base64 image data URL found at `where`; http(s) URLs go to `fetch`."""
    if url.startswith(("http://", "https://")):
        if fetch is not None:
            return fetch(url, where)
        # No server-side fetching unless allowed: it would let any client make this server request any host.
        raise APIError(
            400,
            f"{where}: remote image URLs are not fetched by this server (start it with --allow-image-host "
            "HOST to allow a host); send the image inline as a data URL ('data:image/png;base64,...')",
            param=where,
            code="remote_image_url",
        )
    header, comma, payload = url.partition(",")
    if not url.startswith("data:") or not comma:
        raise APIError(
            400,
            f"{where} must be a data URL 'data:image/<format>;base64,<data>', got {excerpt(url)}",
            param=where,
        )
    media_type, *params = header[len("data:") :].split(";")
    if not media_type.startswith("image/") or "base64" not in params:
        raise APIError(
            400,
            f"{where} must be a base64 image data URL 'data:image/<format>;base64,...', got '{header}'",
            param=where,
        )
    if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise APIError(
            413,
            f"{where}: the image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB",
            param=where,
        )
    try:
        # Whitespace is dropped first: some encoders wrap base64 at 76 columns.
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise APIError(400, f"{where}: the data URL is not valid base64 ({exc})", param=where) from None


def decode_image(data: bytes, image_size: int, interpolation: str, where: str) -> torch.Tensor:
    """Image bytes -> (3, image_size, image_size) in [0, 1]; bytes that are no image (or too many
    pixels) are a 400 naming `where`."""
    try:
        return load_image(data, image_size, interpolation=interpolation)
    except ImageError as exc:
        raise APIError(400, f"{where}: {exc}", param=where) from None


def url_image(url: str, where: str, image_size: int, interpolation: str, fetch: Fetch | None = None) -> torch.Tensor:
    """The image a data URL (or an allowed remote URL) at `where` holds, decoded for the model."""
    return decode_image(data_url_bytes(url, where, fetch), image_size, interpolation, where)
