"""One scaling everywhere: training (`load_image`, `SampleDataset`), serving (`decode_image`) and
detection (`RasterReader`) read a 16-bit RGB TIFF and a 13-band uint16 TIFF as the same tensor."""

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from rsforge.core.sample import Sample, Turn
from rsforge.datasets.images import load_image, load_raster
from rsforge.datasets.torch_dataset import SampleDataset

serve_images = pytest.importorskip("rsforge.serve.images")
rasters = pytest.importorskip("rsforge.geo.rasters")

SIDE = 24


def _rgb16(path):
    data = np.random.default_rng(0).integers(0, 4000, (SIDE, SIDE, 3)).astype(np.uint16)
    data[0, 0] = 65535  # the range's top reads 1.0
    tifffile.imwrite(path, data, photometric="rgb")
    return data


def _sentinel(path):
    data = np.random.default_rng(1).integers(0, 12000, (13, SIDE, SIDE)).astype(np.uint16)
    tifffile.imwrite(path, data, photometric="minisblack", planarconfig="separate")
    return np.moveaxis(data, 0, -1)


def _every_reader(path, size: int) -> dict[str, torch.Tensor]:
    sample = Sample("s", (str(path),), [Turn("user", "?")])
    with rasters.RasterReader(path) as reader:
        window = reader.read(0, 0, SIDE, SIDE)
    views = {
        "load_image": load_image(path, size),
        "SampleDataset": SampleDataset([sample], size)[0]["images"][0],
        "serve": serve_images.decode_image(path.read_bytes(), size, "bilinear", "before"),
    }
    if size == SIDE:
        views["detect"] = torch.from_numpy(window).permute(2, 0, 1)
    return views


@pytest.mark.parametrize("write", [_rgb16, _sentinel], ids=["rgb-uint16", "13-band-uint16"])
def test_training_serving_and_detection_read_the_same_tensor(tmp_path, write):
    path = tmp_path / "scene.tif"
    raw = write(path)
    # the one scaling, computed independently: the first three bands over uint16's range
    expected = torch.from_numpy((raw[..., :3].astype(np.float64) / 65535).astype(np.float32)).permute(2, 0, 1)
    for size in (SIDE, 16):
        views = _every_reader(path, size)
        reference = views.pop("load_image")
        assert reference.shape == (3, size, size) and reference.dtype == torch.float32
        for name, view in views.items():
            assert torch.equal(view, reference), f"{name} differs from load_image at size {size}"
        if size == SIDE:
            torch.testing.assert_close(reference, expected, rtol=0, atol=1e-7)
            assert len(reference.unique()) > 256  # float precision, not cut to a byte
    assert torch.equal(load_raster(path)[:3], load_image(path))


def test_a_declared_range_is_the_scale_everywhere(tmp_path):
    data = np.random.default_rng(2).integers(0, 4096, (SIDE, SIDE, 3)).astype(np.uint16)
    path = tmp_path / "twelve_bit.tif"
    tifffile.imwrite(path, data, photometric="rgb", extratags=[(281, "H", 3, (4095, 4095, 4095), True)])
    expected = torch.from_numpy(data / np.float32(4095)).permute(2, 0, 1)
    for name, view in _every_reader(path, SIDE).items():
        torch.testing.assert_close(view, expected, rtol=0, atol=1e-7, msg=f"{name}: not scaled by MaxSampleValue")


def test_eight_bit_and_sixteen_bit_grey_agree_with_serving(tmp_path):
    Image.fromarray(np.full((SIDE, SIDE), 3000, np.uint16)).save(tmp_path / "grey16.png")
    grey = load_image(tmp_path / "grey16.png")
    assert torch.equal(grey, torch.full((3, SIDE, SIDE), np.float32(3000) / np.float32(65535)))
    served = serve_images.decode_image((tmp_path / "grey16.png").read_bytes(), SIDE, "bilinear", "after")
    assert torch.equal(served, grey)
    rgb8 = np.random.default_rng(3).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb8.tif", rgb8, photometric="rgb")
    Image.fromarray(rgb8).save(tmp_path / "rgb8.png")
    assert torch.equal(load_image(tmp_path / "rgb8.tif"), load_image(tmp_path / "rgb8.png"))
    assert torch.equal(load_image(tmp_path / "rgb8.tif"), torch.from_numpy(rgb8).permute(2, 0, 1).float() / 255)


def test_serving_keeps_its_limits_for_tiffs(tmp_path):
    path = tmp_path / "big.tif"
    _rgb16(path)
    with pytest.raises(serve_images.APIError, match=r"before: image is 24x24 .* over the limit") as caught:
        serve_images.decode_image(path.read_bytes(), 16, "bilinear", "before", max_pixels=100)
    assert caught.value.status == 400
