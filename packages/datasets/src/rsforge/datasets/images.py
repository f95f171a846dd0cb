"""Reading images and change masks into tensors, safely.

Images may come from users (the serving API accepts uploads), so sizes are checked from the header
before any pixel is decoded, and every failure is an `ImageError` naming the file (or "image bytes")
and the problem, never a bare PIL exception.

One scaling, used by training, evaluation, serving (`rsforge.serve.images`) and detection
(`rsforge.geo.rasters`): each value divided by the largest value its file declares, clipped to [0, 1].
Declared: the TIFF MaxSampleValue tag, else 2^BitsPerSample - 1 (12 bits packed in 16), else the
dtype's range (255 for 8-bit, read exactly as ever; 65535 for uint16; signed: the positive range,
negatives read 0); floats are taken as in [0, 1], NaN / inf (nodata) read 0. Why fixed rather than a
per-image stretch: it depends on metadata only, never on content, so a random training crop, the
scene tiled by `rsforge detect`, a tile sent to the server and both dates of a pair map the same
value to the same input. A per-image stretch rescales each date on its own (a flood or a season moves
the percentiles, and every unchanged pixel with them) and a crop differs from the same pixels in the
scene. The cost: data using part of its container (Sentinel-2 reflectance x 10000 in uint16) reads
dark; declare its range (MaxSampleValue, GDAL's NBITS) or rescale the data set once. PIL decodes
colour 16-bit PNGs to their high byte: under this scaling the same value to within 1/255.

`load_image` gives the three bands models take (one band repeated; of more, the first three, as
`rsforge detect` does), or with `channels` != 3 every band of a file that has exactly that many (a
multispectral encoder's `in_chans`); `load_raster` every band, at float precision. Both resize with
`interpolation` ("bilinear", the default, "bicubic" or "nearest"): an encoder states the one it was
trained with.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

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
INTERPOLATIONS: dict[str, Image.Resampling] = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


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


def _is_tiff(source: ImageSource) -> bool:
    if isinstance(source, bytes):
        return source[:4] in _TIFF_MAGIC
    try:
        with open(source, "rb") as f:
            return f.read(4) in _TIFF_MAGIC
    except OSError as exc:
        raise ImageError(f"{source}: cannot open image: {exc}") from exc


def declared_top(dtype: np.dtype, bands: int, bits: int | None = None, max_sample: object = None) -> np.ndarray:
    """(C,) value that reads as 1.0 in each band (module docstring): `max_sample` (one value or one per
    band, the TIFF MaxSampleValue tag), else 2^`bits` - 1 when fewer bits than the dtype holds, else
    the dtype's largest value; 1.0 for floats."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.ones(bands)
    top = float(np.iinfo(dtype).max)
    if bits and bits < dtype.itemsize * 8:
        top = float(2**bits - 1)
    if max_sample is not None:
        return np.broadcast_to(np.asarray(max_sample, np.float64).reshape(-1), (bands,)).copy()
    return np.full(bands, top)


def scale_to_unit(array: np.ndarray, top: np.ndarray) -> np.ndarray:
    """(H, W, C) raw values -> float32 in [0, 1] by the declared maxima `top` (C,); non-finite -> 0."""
    # float32 is exact for 8- and 16-bit integers (and keeps 8-bit bit-identical to x / 255); wider needs float64
    work = np.float32 if array.dtype.kind in "iub" and array.dtype.itemsize <= 2 else np.float64
    data = array.astype(work)
    scaled = np.clip(data / top.astype(work), 0, 1)
    return np.where(np.isfinite(scaled), scaled, 0).astype(np.float32)


def _read_tiff(source: ImageSource, max_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """A TIFF's first image series as (H, W, C), any dtype, with its declared maxima (C,); tifffile reads
    what PIL cannot (more than 4 bands, 16-bit RGB, planar layouts). Palette TIFFs are refused: PIL
    applies their colour map."""
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
            page = tif.pages[0]
            if page.photometric == tifffile.PHOTOMETRIC.PALETTE:
                raise ImageError(f"{name}: palette TIFF; read through PIL, which applies the colour map")
            max_tag = page.tags.get(281)  # MaxSampleValue
            bits, max_sample = page.bitspersample, max_tag.value if max_tag is not None else None
            array = series.asarray()
    except ImageError:
        raise
    # NotImplementedError: a codec tifffile lacks without imagecodecs (packed 12-bit...): PIL may know it
    except (tifffile.TiffFileError, OSError, ValueError, IndexError, NotImplementedError) as exc:
        raise ImageError(f"{name}: cannot read TIFF: {exc}") from exc
    # drop length-1 axes, then what is left besides Y and X is the band axis (S, C, I, Q...)
    keep = [i for i, a in enumerate(axes) if a in "YX" or shape[i] != 1]
    array = array.reshape([shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    if len(axes) == 2:
        array = array[..., None] if axes == "YX" else array.T[..., None]
    elif len(axes) != 3:
        raise ImageError(f"{name}: TIFF series has axes {axes!r}; expected Y, X and at most one band axis")
    else:
        band = next(i for i, a in enumerate(axes) if a not in "YX")
        array = np.moveaxis(array, [axes.index("Y"), axes.index("X"), band], [0, 1, 2])
    return array, declared_top(array.dtype, array.shape[-1], bits, max_sample)


def _read_pil_bands(source: ImageSource, max_pixels: int, *, rgb: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, C) and its declared maxima through PIL; `rgb`: 8-bit modes converted to RGB by PIL (colour
    spaces, palettes and alpha handled as always), wider ones (16-bit grey, 32-bit) kept as one band."""
    with _open(source, max_pixels) as img:
        if rgb and img.mode not in _WIDE_MODES:
            img = img.convert("RGB")
        elif img.mode in ("P", "PA"):
            img = img.convert("RGBA" if img.mode == "PA" else "RGB")
        elif img.mode == "1":
            img = img.convert("L")
        array = np.asarray(img)
    array = array[..., None] if array.ndim == 2 else array
    return array, declared_top(array.dtype, array.shape[-1])


def read_bands(source: ImageSource, max_pixels: int, *, rgb: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Raw (H, W, C) values and their declared maxima (C,): TIFFs through tifffile (PIL when tifffile cannot
    decode them, e.g. JPEG-in-TIFF), everything else through PIL (`rgb`: see `_read_pil_bands`)."""
    if not _is_tiff(source):
        return _read_pil_bands(source, max_pixels, rgb=rgb)
    try:
        return _read_tiff(source, max_pixels)
    except ImageError as exc:
        try:
            return _read_pil_bands(source, max_pixels, rgb=rgb)
        except ImageError:
            raise exc from None


def rgb_bands(array: np.ndarray, top: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The first three bands (and their maxima); a single band is repeated (grey scenes)."""
    if array.shape[-1] == 1:
        return np.repeat(array, 3, axis=-1), np.repeat(top, 3)
    if array.shape[-1] == 2:
        raise ImageError(f"{name}: 2 bands; expected 1 (grey) or at least 3 (RGB first)")
    return array[..., :3], top[:3]


def _resize_float(scaled: np.ndarray, size: int, resample: Image.Resampling) -> np.ndarray:
    """(H, W, C) float32 resized band by band as 32-bit float images: no rounding to 8 bits; bicubic may
    overshoot, hence the clip."""
    bands = [
        np.asarray(Image.fromarray(np.ascontiguousarray(scaled[..., c])).resize((size, size), resample))
        for c in range(scaled.shape[-1])
    ]
    return np.clip(np.stack(bands, axis=-1), 0, 1)


def load_image(
    source: ImageSource,
    size: int | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    interpolation: Interpolation = "bilinear",
    channels: int = 3,
) -> torch.Tensor:
    """An image as float32 (3, H, W) in [0, 1], RGB, by the module's one scaling; resized to `size` x
    `size` with `interpolation` (antialiased when shrinking) when `size` is given. `source` is a path
    or the encoded file's bytes. `channels` other than 3: all bands, (C, H, W), of a file that must have
    exactly that many (a 13-band model fed a 3-band file, or the reverse, is an error, not a guess)."""
    resample = _resampling(interpolation)
    if channels == 3:
        array, top = rgb_bands(*read_bands(source, max_pixels, rgb=True), _name(source))
    else:
        array, top = read_bands(source, max_pixels)
        if array.shape[-1] != channels:
            raise ImageError(f"{_name(source)}: {array.shape[-1]} band(s), the model takes {channels}")
    if channels == 3 and array.dtype == np.uint8 and (top == 255).all():
        # 8-bit: resized as bytes and divided by 255, exactly as these images have always been read
        rgb = Image.fromarray(np.ascontiguousarray(array))
        if size is not None and rgb.size != (size, size):
            # PIL's bilinear and bicubic filters widen their support when shrinking, i.e. they antialias
            rgb = rgb.resize((size, size), resample)
        return torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255)
    scaled = scale_to_unit(array, top)
    if size is not None and scaled.shape[:2] != (size, size):
        scaled = _resize_float(scaled, size, resample)
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1)))


def load_raster(
    source: ImageSource,
    size: int | None = None,
    *,
    interpolation: Interpolation = "bilinear",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """An image with all its bands as float32 (C, H, W) in [0, 1] by the module's one scaling; resized
    to `size` x `size` with `interpolation` when `size` is given."""
    resample = _resampling(interpolation)
    array, top = read_bands(source, max_pixels)
    scaled = scale_to_unit(array, top)
    if size is not None and scaled.shape[:2] != (size, size):
        scaled = _resize_float(scaled, size, resample)
    return torch.from_numpy(np.ascontiguousarray(scaled.transpose(2, 0, 1)))


def image_info(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int, str]:
    """(width, height, kind) of an image, decoding it fully so that truncated files show. `kind` is
    "<C>-band <dtype>" for TIFFs (PIL would report a 16-bit RGB TIFF as "RGB"), else PIL's mode."""
    tiff_error = None
    if _is_tiff(source):
        try:
            array, _ = _read_tiff(source, max_pixels)
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


_SINGLE_BAND = frozenset({"1", "L"}) | _WIDE_MODES


def _class_ids(img: Image.Image, classes: Sequence[Mapping[str, Any]], name: str) -> np.ndarray:
    """A label's pixels as ids into `classes` (a class's id is its position in the table).

    A table of `color`s reads RGB-coded labels by colour (palette images by their colours too: the order
    of a palette is arbitrary), and single-band ones as the ids themselves (index-encoded copies of an
    RGB-coded set, such as the `label1/` of Bi-SRNet's SECOND). A table of `value`s reads single-band
    and palette labels by value, RGB ones by their first band (LEVIR-MCI: Change-Agent reads that band
    alone). Any other value is an error naming it and the table."""
    by_color = all("color" in c for c in classes)
    if by_color and img.mode not in _SINGLE_BAND:
        rgb = np.asarray(img.convert("RGB")).astype(np.int64)
        keys = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        codes = np.array([(r << 16) | (g << 8) | b for r, g, b in (c["color"] for c in classes)], np.int64)
        expected = [tuple(c["color"]) for c in classes]
    else:
        array = np.asarray(img if img.mode in _SINGLE_BAND or img.mode == "P" else img.convert("RGB"))
        keys = (array[..., 0] if array.ndim == 3 else array).astype(np.int64)
        codes = np.arange(len(classes)) if by_color else np.array([c["value"] for c in classes], np.int64)
        expected = codes.tolist()
    order = np.argsort(codes)
    index = np.searchsorted(codes[order], keys).clip(0, len(codes) - 1)
    known = codes[order][index] == keys
    if not known.all():
        unknown = np.unique(keys[~known])[:10].tolist()
        if by_color and img.mode not in _SINGLE_BAND:
            unknown = [(k >> 16, (k >> 8) & 255, k & 255) for k in unknown]
        table = ", ".join(f"{c['name']} {e}" for c, e in zip(classes, expected, strict=True))
        raise ImageError(f"{name}: label values not in its class table: {', '.join(map(str, unknown))} "
                         f"(the table: {table})")
    return order[index].astype(np.uint8)


def load_mask(
    path: ImageSource, size: int | None = None, *, classes: Sequence[Mapping[str, Any]] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> torch.Tensor:
    """A binary change mask as float32 (H, W) of 0/1; nearest-neighbour resize to `size`.
    The file must hold 0/255 or 0/1 (palette images: their indices); anything else is an error
    rather than a guess, since a wrong threshold silently corrupts every metric.

    With `classes`, a K-class mask's class table (`sample.meta["mask_classes"]`: one `{"name", "color":
    [r, g, b]}` or `{"name", "value"}` per class), the mask is int64 class ids (H, W) instead, read as
    `_class_ids` says and resized nearest-neighbour too, so no pixel gets an id that is in neither."""
    name = _name(path)
    if classes is not None and not 1 <= len(classes) <= 256:
        raise ValueError(f"{name}: a class table must have 1 to 256 classes, got {len(classes)}")
    with _open(path, max_pixels) as img:
        if classes is not None:
            array = _class_ids(img, classes, name)
        elif img.mode == "P":
            array = np.asarray(img)  # palette indices are the labels
        else:
            keep = img.mode in ("1", "L") or img.mode in _WIDE_MODES  # label values as stored
            array = np.asarray(img if keep else img.convert("L"))
    if classes is not None:
        if size is not None and array.shape != (size, size):
            array = np.asarray(Image.fromarray(array).resize((size, size), Image.Resampling.NEAREST))
        return torch.from_numpy(array.astype(np.int64))
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
