"""Reading images and change masks into tensors, safely.

Images may come from users (the serving API accepts uploads), so sizes are checked from the header
before any pixel is decoded, and every failure is an `ImageError` naming the file (or "image bytes")
and the problem, never a bare PIL exception.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

# Largest image decoded by default: 8192 x 8192 pixels (64 MP, 192 MiB as RGB bytes and 768 MiB as
# a float tensor). Larger scenes should be tiled before they reach a model. PIL keeps its own,
# larger guard (`Image.MAX_IMAGE_PIXELS`), which still applies when `max_pixels` is raised past it.
DEFAULT_MAX_PIXELS = 8192 * 8192

ImageSource = str | Path | bytes
_WIDE_MODES = frozenset({"I", "F", "I;16", "I;16B", "I;16L", "I;16N"})


class ImageError(ValueError):
    """An image or mask cannot be used: unreadable, too large, or (masks) not binary."""


def _name(source: ImageSource) -> str:
    return "image bytes" if isinstance(source, bytes) else str(source)


def _open(source: ImageSource, max_pixels: int) -> Image.Image:
    """Open and decode `source`, refusing oversized images before decoding them."""
    name = _name(source)
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: refused as a decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not an image in a format PIL can read") from exc
    except OSError as exc:  # missing file, permissions, a broken header
        raise ImageError(f"{name}: cannot open image: {exc}") from exc
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise ImageError(
            f"{name}: image is {width}x{height} ({width * height / 1e6:.1f} MP), over the limit of "
            f"{max_pixels / 1e6:.1f} MP (max_pixels); refused before decoding"
        )
    try:
        img.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        img.close()
        raise ImageError(f"{name}: truncated or corrupt image data: {exc}") from exc
    return img


def load_image(
    source: ImageSource, size: int | None = None, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> torch.Tensor:
    """An image as float32 (3, H, W) in [0, 1], RGB; resized to `size` x `size` (bilinear with
    antialiasing) when `size` is given. `source` is a path or the encoded file's bytes."""
    with _open(source, max_pixels) as img:
        if img.mode in _WIDE_MODES:
            # PIL would clip these to 0-255 without a word; the right scaling depends on the sensor
            raise ImageError(
                f"{_name(source)}: {img.mode} image (more than 8 bits per channel); "
                "rescale it to 8-bit RGB first"
            )
        rgb = img.convert("RGB")
    if size is not None and rgb.size != (size, size):
        # PIL's bilinear filter widens its support when shrinking, i.e. it antialiases
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(rgb, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255)


def load_mask(
    path: ImageSource, size: int | None = None, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> torch.Tensor:
    """A binary change mask as float32 (H, W) of 0/1; nearest-neighbour resize to `size`.
    The file must hold 0/255 or 0/1 (palette images: their indices); anything else is an error
    rather than a guess, since a wrong threshold silently corrupts every metric."""
    name = _name(path)
    with _open(path, max_pixels) as img:
        if img.mode == "P":
            array = np.asarray(img)  # palette indices are the labels
        else:
            keep = img.mode in ("1", "L") or img.mode in _WIDE_MODES  # label values as stored
            array = np.asarray(img if keep else img.convert("L"))
    values = np.unique(array)
    if set(values.tolist()) <= {0, 255}:
        binary = (array == 255).astype(np.uint8)
    elif set(values.tolist()) <= {0, 1}:
        binary = array.astype(np.uint8)
    else:
        shown = ", ".join(str(v) for v in values[:10]) + (", ..." if len(values) > 10 else "")
        raise ImageError(f"{name}: a change mask must hold only 0/255 or 0/1, found values {shown}")
    if size is not None and binary.shape != (size, size):
        binary = np.asarray(Image.fromarray(binary).resize((size, size), Image.Resampling.NEAREST))
    return torch.from_numpy(binary.astype(np.float32))


def tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """A (3, H, W) image or (H, W) / (1, H, W) mask with values in [0, 1] as a PIL image (for
    reports and the web page)."""
    t = t.detach().to("cpu", torch.float32)
    if t.dim() == 3 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 2:
        return Image.fromarray((t.clamp(0, 1) * 255).round().to(torch.uint8).numpy())  # mode L
    if t.dim() == 3 and t.shape[0] == 3:
        array = (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
        return Image.fromarray(array)  # mode RGB
    raise ValueError(f"tensor_to_pil: expected (3, H, W), (1, H, W) or (H, W), got {tuple(t.shape)}")
