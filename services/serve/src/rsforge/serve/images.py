"""Request images: a data URL (or an allowed remote URL) -> bytes -> a model-sized tensor.

The one place request images are decoded: chat `image_url` parts and the change-mask `before` /
`after` fields (those only as far as their header: `header_size`; the tiled inference reads them at
native resolution). Decoding follows `rsforge.datasets.images.load_image` (8-bit RGB, resized with the
model's interpolation as in training) but is built for untrusted uploads: the pixel limit is checked
from the header before any pixel is decoded, a JPEG is decoded straight at the smallest scale still
at least the model's size (`draft`), and shrinking first reduces by an integer factor, so a big image
costs a fraction of a full-size decode and resize. TIFFs and images of more than 8 bits go through
`load_image` itself, scaled to [0, 1] by its one scaling as in training. Every failure is an
`APIError` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from rsforge.datasets.images import INTERPOLATIONS, ImageError, _is_tiff, load_image
from rsforge.serve.errors import APIError, excerpt
from rsforge.serve.limits import DEFAULT_MAX_IMAGE_PIXELS

MAX_IMAGE_BYTES = 20 * 1024 * 1024
# Modes with more than 8 bits per channel: PIL would clip them to 0-255, so the training loader reads them.
_WIDE_MODES = frozenset({"I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
# Shrink by an integer factor (a cheap box reduction) while the image stays over 3x the target, then
# resample: Pillow documents the result as indistinguishable from a full resample at this gap.
REDUCING_GAP = 3.0
# What Pillow raises on hostile bytes besides OSError: `ValueError("Decompressed data too large")` for
# zTXt/iCCP chunks that inflate too far, SyntaxError and EOFError from broken headers.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)

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


def decode_image(data: bytes, image_size: int, interpolation: str, where: str,
                 max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> torch.Tensor:
    """Image bytes -> (3, image_size, image_size) in [0, 1]; bytes that are no image, over
    `max_pixels` or broken are a 400 naming `where`."""
    if _is_tiff(data):  # 16-bit / multi-band rasters: PIL would cut them to 8 bits or not read them
        return _decode_scaled(data, image_size, interpolation, where, max_pixels)
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise APIError(400, f"{where}: refused as a decompression bomb: {exc}", param=where) from None
    except UnidentifiedImageError:
        raise APIError(400, f"{where}: not an image in a format PIL can read", param=where) from None
    except _DECODE_ERRORS as exc:
        raise APIError(400, f"{where}: cannot read the image: {exc}", param=where) from None
    with img:
        width, height = img.size
        if width * height > max_pixels:
            raise APIError(400, f"{where}: image is {width}x{height} ({width * height / 1e6:.1f} MP), over the limit "
                           f"of {max_pixels / 1e6:.1f} MP; refused before decoding", param=where)
        if img.mode in _WIDE_MODES:
            return _decode_scaled(data, image_size, interpolation, where, max_pixels)
        img.draft("RGB", (image_size, image_size))  # JPEG only (DCT scaling); other formats ignore it
        try:
            img.load()
            rgb = img if img.mode == "RGB" else img.convert("RGB")
            if rgb.size != (image_size, image_size):
                rgb = rgb.resize((image_size, image_size), INTERPOLATIONS[interpolation], reducing_gap=REDUCING_GAP)
            array = np.array(rgb, dtype=np.uint8)
        except _DECODE_ERRORS as exc:
            raise APIError(400, f"{where}: truncated or corrupt image data: {exc}", param=where) from None
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255)


def _decode_scaled(data: bytes, image_size: int, interpolation: str, where: str, max_pixels: int) -> torch.Tensor:
    """Wider than 8-bit or multi-band images through the training loader, so that they are scaled to
    [0, 1] exactly as the model saw such data in training (its limits checked from the header too)."""
    try:
        return load_image(data, image_size, interpolation=interpolation, max_pixels=max_pixels)
    except ImageError as exc:
        raise APIError(400, f"{where}: {str(exc).removeprefix('image bytes: ')}", param=where) from None


def header_size(data: bytes, where: str) -> tuple[int, int]:
    """(width, height) of image bytes from the header alone (a change-detection scene, TIFF/GeoTIFF
    included, before any pixel is decoded); bytes that are no readable image are a 400 naming `where`."""
    if _is_tiff(data):
        import tifffile  # a GeoTIFF's bands and sample types are often beyond what PIL reads

        try:
            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                page = tif.pages.first
                return int(page.imagewidth), int(page.imagelength)
        except (tifffile.TiffFileError, *_DECODE_ERRORS, IndexError) as exc:
            raise APIError(400, f"{where}: cannot read the TIFF header: {exc}", param=where) from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except UnidentifiedImageError:
        raise APIError(400, f"{where}: not an image in a format PIL or tifffile can read", param=where) from None
    except _DECODE_ERRORS as exc:
        raise APIError(400, f"{where}: cannot read the image: {exc}", param=where) from None


def url_image(url: str, where: str, image_size: int, interpolation: str, fetch: Fetch | None = None,
              max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> torch.Tensor:
    """The image a data URL (or an allowed remote URL) at `where` holds, decoded for the model."""
    return decode_image(data_url_bytes(url, where, fetch), image_size, interpolation, where, max_pixels)
