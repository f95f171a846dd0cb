"""Reading images and change masks into tensors, safely.

Images may come from users (the serving API accepts uploads), so sizes are checked from the header
before any pixel is decoded, and every failure is an `ImageError` naming the file (or "image bytes")
and the problem, never a bare PIL exception.

`load_image` reads 8-bit RGB (what encoders take by default). `load_raster` reads any number of
bands at any bit depth (16-bit, float, multi-spectral TIFFs through tifffile) and scales each band
to [0, 1] on its own: 8-bit data by 1/255 as in `load_image`, wider data by a per-band stretch
(`"percentile"`, the default: 2nd to 98th percentile, the tails clamped, robust to hot pixels and
nodata spikes; or `"minmax"`: the band's min to max). Values are kept as floats, never rounded to
8 bits. Both take the resampling filter for resizing as `interpolation` ("bilinear", the default,
"bicubic" or "nearest"): an encoder states the one it was trained with.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

# Largest image decoded by default: 8192 x 8192 pixels (64 MP, 192 MiB as RGB bytes and 768 MiB as
# a float tensor). Larger scenes should be tiled before they reach a model. PIL keeps its own,
# larger guard (`Image.MAX_IMAGE_PIXELS`), which still applies when `max_pixels` is raised past it.
DEFAULT_MAX_PIXELS = 8192 * 8192

ImageSource = str | Path | bytes
_WIDE_MODES = frozenset({"I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic TIFF and BigTIFF

Interpolation = Literal["bilinear", "bicubic", "nearest"]
Stretch = Literal["percentile", "minmax"]
INTERPOLATIONS: dict[str, Image.Resampling] = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}
STRETCH_PERCENTILES = (2.0, 98.0)


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


def _resampling(interpolation: str) -> Image.Resampling:
    try:
        return INTERPOLATIONS[interpolation]
    except KeyError:
        raise ValueError(
            f"unknown interpolation {interpolation!r}; expected one of {', '.join(INTERPOLATIONS)}"
        ) from None


def load_image(
    source: ImageSource,
    size: int | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    interpolation: Interpolation = "bilinear",
) -> torch.Tensor:
    """An image as float32 (3, H, W) in [0, 1], RGB; resized to `size` x `size` with
    `interpolation` (antialiased when shrinking) when `size` is given. `source` is a path or the
    encoded file's bytes."""
    resample = _resampling(interpolation)
    with _open(source, max_pixels) as img:
        if img.mode in _WIDE_MODES:
            # PIL would clip these to 0-255 without a word; the right scaling depends on the sensor
            raise ImageError(
                f"{_name(source)}: {img.mode} image (more than 8 bits per channel); "
                "rescale it to 8-bit RGB first, or read it with load_raster (per-band stretch to [0, 1])"
            )
        rgb = img.convert("RGB")
    if size is not None and rgb.size != (size, size):
        # PIL's bilinear and bicubic filters widen their support when shrinking, i.e. they antialias
        rgb = rgb.resize((size, size), resample)
    array = np.asarray(rgb, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255)


def _is_tiff(source: ImageSource) -> bool:
    if isinstance(source, bytes):
        return source[:4] in _TIFF_MAGIC
    try:
        with open(source, "rb") as f:
            return f.read(4) in _TIFF_MAGIC
    except OSError as exc:
        raise ImageError(f"{source}: cannot open image: {exc}") from exc


def _read_tiff(source: ImageSource, max_pixels: int) -> np.ndarray:
    """A TIFF's first image series as (H, W, C), any dtype; tifffile reads what PIL cannot
    (more than 4 bands, 16-bit RGB, planar layouts)."""
    import tifffile  # only rasters need it

    name = _name(source)
    try:
        with tifffile.TiffFile(io.BytesIO(source) if isinstance(source, bytes) else source) as tif:
            series = tif.series[0]
            axes, shape = series.axes, series.shape
            if "Y" not in axes or "X" not in axes:
                raise ImageError(f"{name}: TIFF series has axes {axes!r}, no Y and X")
            height, width = shape[axes.index("Y")], shape[axes.index("X")]
            if width * height > max_pixels:
                raise ImageError(
                    f"{name}: image is {width}x{height} ({width * height / 1e6:.1f} MP), over the limit of "
                    f"{max_pixels / 1e6:.1f} MP (max_pixels); refused before decoding"
                )
            array = series.asarray()
    except ImageError:
        raise
    except (tifffile.TiffFileError, OSError, ValueError, IndexError) as exc:
        raise ImageError(f"{name}: cannot read TIFF: {exc}") from exc
    # drop length-1 axes, then what is left besides Y and X is the band axis (S, C, I, Q...)
    keep = [i for i, a in enumerate(axes) if a in "YX" or shape[i] != 1]
    array = array.reshape([shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    if len(axes) == 2:
        return array[..., None] if axes == "YX" else array.T[..., None]
    if len(axes) != 3:
        raise ImageError(f"{name}: TIFF series has axes {axes!r}; expected Y, X and at most one band axis")
    band = next(i for i, a in enumerate(axes) if a not in "YX")
    return np.moveaxis(array, [axes.index("Y"), axes.index("X"), band], [0, 1, 2])


def _read_pil_bands(source: ImageSource, max_pixels: int) -> np.ndarray:
    with _open(source, max_pixels) as img:
        if img.mode in ("P", "PA"):
            img = img.convert("RGBA" if img.mode == "PA" else "RGB")
        elif img.mode == "1":
            img = img.convert("L")
        array = np.asarray(img)
    return array[..., None] if array.ndim == 2 else array


def _stretch(array: np.ndarray, stretch: Stretch) -> np.ndarray:
    """(H, W, C) of any dtype -> float32 in [0, 1], each band on its own (see the module docstring)."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255
    if stretch not in ("percentile", "minmax"):
        raise ValueError(f"unknown stretch {stretch!r}; expected 'percentile' or 'minmax'")
    data = array.astype(np.float64)
    out = np.zeros(data.shape, np.float32)
    for c in range(data.shape[-1]):
        band = data[..., c]
        finite = band[np.isfinite(band)]  # NaN / inf: nodata in float rasters, read as 0
        if finite.size == 0:
            continue
        if stretch == "minmax":
            lo, hi = finite.min(), finite.max()
        else:
            lo, hi = np.percentile(finite, STRETCH_PERCENTILES)
        if hi > lo:
            scaled = np.clip((band - lo) / (hi - lo), 0, 1)
            out[..., c] = np.where(np.isfinite(scaled), scaled, 0)
    return out


def load_raster(
    source: ImageSource,
    size: int | None = None,
    *,
    stretch: Stretch = "percentile",
    interpolation: Interpolation = "bilinear",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """An image with all its bands as float32 (C, H, W) in [0, 1], each band scaled on its own
    (module docstring); resized to `size` x `size` with `interpolation` when `size` is given.
    TIFFs are read with tifffile (any band count and bit depth), everything else with PIL."""
    resample = _resampling(interpolation)
    if _is_tiff(source):
        try:
            array = _read_tiff(source, max_pixels)
        except ImageError as exc:
            # a compression tifffile cannot decode without extra codecs (JPEG-in-TIFF...) PIL may know
            try:
                array = _read_pil_bands(source, max_pixels)
            except ImageError:
                raise exc from None
    else:
        array = _read_pil_bands(source, max_pixels)
    scaled = _stretch(array, stretch)
    if size is not None and scaled.shape[:2] != (size, size):
        # band by band as 32-bit float images: no rounding to 8 bits; bicubic may overshoot, hence the clip
        bands = [
            np.asarray(Image.fromarray(np.ascontiguousarray(scaled[..., c])).resize((size, size), resample))
            for c in range(scaled.shape[-1])
        ]
        scaled = np.clip(np.stack(bands, axis=-1), 0, 1)
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1)))


def image_info(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int, str]:
    """(width, height, kind) of an image, decoding it fully so that truncated files show. `kind` is
    "<C>-band <dtype>" for TIFFs (PIL would report a 16-bit RGB TIFF as "RGB"), else PIL's mode."""
    tiff_error = None
    if _is_tiff(source):
        try:
            array = _read_tiff(source, max_pixels)
            return array.shape[1], array.shape[0], f"{array.shape[2]}-band {array.dtype}"
        except ImageError as exc:  # a compression only PIL decodes: let PIL try
            tiff_error = exc
    try:
        with _open(source, max_pixels) as img:
            return img.width, img.height, img.mode
    except ImageError:
        if tiff_error is not None:
            raise tiff_error from None
        raise


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
