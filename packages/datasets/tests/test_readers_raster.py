"""16-bit and multi-band TIFFs, per-band scaling, and the interpolation choice."""

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from rsforge.datasets.images import ImageError, image_info, load_image, load_raster


def test_multiband_uint16_by_declared_range(tmp_path):
    rng = np.random.default_rng(0)
    bands = rng.integers(0, 4000, (6, 8, 5)).astype(np.uint16)
    bands[..., 4] += 30000  # a band far off the others' range: the same fixed scale, no per-band stretch
    path = tmp_path / "s2.tif"
    tifffile.imwrite(path, bands, photometric="minisblack", planarconfig="contig")
    t = load_raster(path)
    assert t.shape == (5, 6, 8) and t.dtype == torch.float32
    expected = np.moveaxis(bands, 2, 0) / 65535
    assert torch.allclose(t, torch.from_numpy(expected.astype(np.float32)), atol=1e-6)
    assert len(torch.unique(t[0])) > 256 or len(np.unique(bands[..., 0])) <= 256  # not rounded to 8 bits
    assert image_info(path) == (8, 6, "5-band uint16")


def test_planar_layout_and_float_range(tmp_path):
    data = np.linspace(0, 1, 13 * 10 * 10).reshape(13, 10, 10).astype(np.float32)
    data[0, 0, :3] = 1e9, np.nan, -2  # floats are taken as in [0, 1]: clipped, nodata read as 0
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, data, photometric="minisblack", planarconfig="separate")
    t = load_raster(path)
    assert t.shape == (13, 10, 10) and t[0, 0, :3].tolist() == [1, 0, 0]
    assert torch.equal(t[1:], torch.from_numpy(data[1:]))
    assert load_raster(path.read_bytes(), size=4, interpolation="bicubic").shape == (13, 4, 4)


def test_8bit_images_keep_the_fixed_scale(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert torch.equal(load_raster(tmp_path / "rgb.png"), load_image(tmp_path / "rgb.png"))
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    assert torch.equal(load_raster(tmp_path / "rgb.tif"), load_image(tmp_path / "rgb.png"))


def test_raster_pixel_limit_and_errors(tmp_path):
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((20, 20), np.uint16))
    with pytest.raises(ImageError, match=r"big\.tif: image is 20x20 .* over the limit"):
        load_raster(tmp_path / "big.tif", max_pixels=100)
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(ImageError, match=r"bad\.tif"):
        load_raster(tmp_path / "bad.tif")
    with pytest.raises(ValueError, match="unknown interpolation 'area'"):
        load_raster(tmp_path / "big.tif", size=4, interpolation="area")


def test_load_image_interpolation(tmp_path):
    checker = (np.indices((8, 8)).sum(0) % 2 * 255).astype(np.uint8)
    Image.fromarray(np.stack([checker] * 3, -1)).save(tmp_path / "c.png")
    nearest = load_image(tmp_path / "c.png", size=16, interpolation="nearest")
    assert set(nearest.unique().tolist()) == {0.0, 1.0}
    bilinear = load_image(tmp_path / "c.png", size=16)
    assert len(bilinear.unique()) > 2
    assert not torch.equal(load_image(tmp_path / "c.png", size=16, interpolation="bicubic"), bilinear)
    with pytest.raises(ValueError, match="unknown interpolation"):
        load_image(tmp_path / "c.png", size=4, interpolation="lanczos")
