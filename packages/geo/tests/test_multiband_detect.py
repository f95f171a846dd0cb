"""`rsforge detect` on a 13-band scene for a multispectral model (`in_chans: 13`): every band reaches the
model, scaled as training scales it (`load_image(..., channels=13)`), and a wrong band count is refused."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from rsforge.datasets.images import ImageError, load_image
from rsforge.geo.tiling import detect

BANDS = 13


class LastBandChange:
    """Change where the 13th band differs by more than 0.1 between the dates; fails on any other band count."""

    image_size, tile, interpolation, in_chans = 32, 32, "bilinear", BANDS

    def mask_logits(self, images: torch.Tensor, instructions: list[str] | None = None) -> torch.Tensor:
        assert images.shape[2] == BANDS, images.shape
        diff = (images[:, 1, -1] - images[:, 0, -1]).abs()
        return torch.where(diff > 0.1, 20.0, -20.0)[:, None]


def _scene(path, last_band: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    bands = rng.integers(0, 65535, (BANDS, *last_band.shape), dtype=np.uint16)
    bands[-1] = last_band
    tifffile.imwrite(path, bands, photometric="minisblack", planarconfig="separate")


def test_every_band_reaches_the_model_scaled_as_in_training(tmp_path):
    before = np.full((70, 50), 10000, np.uint16)
    after = before.copy()
    after[20:40, 10:30] = 30000  # (30000 - 10000) / 65535 = 0.31 > 0.1
    _scene(tmp_path / "a.tif", before)
    _scene(tmp_path / "b.tif", after)
    stats = detect(LastBandChange(), tmp_path / "a.tif", tmp_path / "b.tif", tmp_path / "mask.png", progress=False)
    mask = np.asarray(Image.open(tmp_path / "mask.png")) == 255
    assert stats.changed == 400 and mask[20:40, 10:30].all() and mask.sum() == 400
    a, b = (load_image(tmp_path / name, channels=BANDS) for name in ("a.tif", "b.tif"))
    assert torch.equal((b[-1] - a[-1]).abs() > 0.1, torch.from_numpy(mask))


def test_a_scene_with_other_bands_is_refused(tmp_path):
    rgb = np.zeros((40, 40, 3), np.uint8)
    for name in ("a.png", "b.png"):
        Image.fromarray(rgb).save(tmp_path / name)
    with pytest.raises(ImageError, match=r"3 band.*takes 13"):
        detect(LastBandChange(), tmp_path / "a.png", tmp_path / "b.png", tmp_path / "m.png", progress=False)
