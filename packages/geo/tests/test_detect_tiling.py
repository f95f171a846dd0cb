"""Tiling arithmetic and blending of `rsforge.geo.tiling`, with fake models (no plugin needed)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rsforge.geo.rasters import RasterReader
from rsforge.geo.tiling import TiledPredictor, detect, tile_starts, window_weight


class ConstantModel:
    """Every pixel of every tile gets the same probability."""

    image_size = 32

    def __init__(self, prob: float = 0.3) -> None:
        self.logit = float(np.log(prob / (1 - prob)))

    def mask_logits(self, images: torch.Tensor, instructions: list[str] | None = None) -> torch.Tensor:
        b, _, _, s, _ = images.shape
        return torch.full((b, 1, s, s), self.logit)


class EchoModel:
    """Probability = the after image's red value at that pixel: a function of position when the
    image encodes position, so tiles must agree wherever they overlap."""

    image_size = 32

    def mask_logits(self, images: torch.Tensor, instructions: list[str] | None = None) -> torch.Tensor:
        return torch.logit(images[:, 1, :1].double().clamp(1e-6, 1 - 1e-6)).float()


def _gradient(path: Path, width: int, height: int) -> np.ndarray:
    """An RGB PNG whose red channel is a smooth function of (x, y); returns red / 255."""
    y, x = np.mgrid[:height, :width]
    red = np.round(255 * (0.5 + 0.45 * np.sin(x / 17.0) * np.cos(y / 23.0))).astype(np.uint8)
    Image.fromarray(np.stack([red, red // 2, 255 - red], -1)).save(path)
    return red / 255


def _blend(predictor: TiledPredictor, path: Path) -> np.ndarray:
    with RasterReader(path) as a, RasterReader(path) as b:
        rows, blocks = [], []
        for row, probs in predictor.strips(a, b):
            rows.append((row, probs.shape[1]))
            blocks.append(probs.numpy())
        height = a.info.height
    # consecutive row blocks, each row exactly once
    assert [r for r, _ in rows] == list(np.cumsum([0] + [n for _, n in rows[:-1]]))
    assert sum(n for _, n in rows) == height
    return np.concatenate(blocks, axis=1)


@pytest.mark.parametrize("length, tile, stride", [(100, 32, 24), (97, 32, 32), (32, 32, 16), (20, 32, 24),
                                                  (1000, 256, 224), (33, 32, 1)])  # fmt: skip
def test_tiles_cover_every_pixel_edges_included(length, tile, stride):
    starts = tile_starts(length, tile, stride)
    covered = np.zeros(max(length, tile), int)
    for s in starts:
        covered[s : s + tile] += 1
    assert covered[:length].min() >= 1  # every pixel, the last row / column included
    assert starts[0] == 0 and starts[-1] + tile == max(length, tile)  # nothing read past the edge
    assert all(b - a <= stride for a, b in itertools.pairwise(starts))
    assert starts == sorted(set(starts))


def test_tile_arguments_are_checked():
    with pytest.raises(ValueError, match="stride"):
        tile_starts(100, 32, 40)
    with pytest.raises(ValueError, match="overlap"):
        TiledPredictor(ConstantModel(), overlap=32)


def test_window_weight_ramps_but_never_reaches_zero():
    w = window_weight(32, 8)
    assert w.shape == (32, 32) and w.min() > 0 and w.max() == 1
    assert w[16, 16] == 1 and w[0, 16] < w[4, 16] < w[8, 16]
    np.testing.assert_allclose(w, w[::-1, ::-1])
    assert (window_weight(16, 0) == 1).all()


@pytest.mark.parametrize("width, height", [(100, 77), (32, 32), (20, 45)])
def test_constant_model_gives_constant_output(tmp_path, width, height):
    path = tmp_path / "scene.png"
    _gradient(path, width, height)
    probs = _blend(TiledPredictor(ConstantModel(0.3), overlap=8, batch=3), path)
    assert probs.shape == (1, height, width)
    np.testing.assert_allclose(probs, 0.3, atol=1e-6)


@pytest.mark.parametrize("overlap", [0, 8, 15])
def test_position_dependent_output_is_seamless(tmp_path, overlap):
    path = tmp_path / "scene.png"
    truth = _gradient(path, 131, 99)  # not a multiple of any stride
    probs = _blend(TiledPredictor(EchoModel(), overlap=overlap, batch=5), path)
    np.testing.assert_allclose(probs[0], truth, atol=1e-5)


def test_tiles_larger_than_the_model_are_resized(tmp_path):
    path = tmp_path / "scene.png"
    truth = _gradient(path, 150, 120)
    probs = _blend(TiledPredictor(EchoModel(), tile=48, overlap=12), path)
    assert probs.shape == (1, 120, 150)
    # resized to 32 px and back: close, not exact, and no seam larger than that blur
    assert np.abs(probs[0] - truth).max() < 0.05


def test_detect_writes_a_png_mask_and_counts_the_change(tmp_path):
    before, after, out = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "out" / "change.png"
    truth = _gradient(before, 70, 50)
    _gradient(after, 70, 50)
    stats = detect(EchoModel(), before, after, out, overlap=4, threshold=0.5, progress=False)
    mask = np.asarray(Image.open(out))
    assert mask.shape == (50, 70) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask > 0, truth > 0.5)
    assert stats.changed == int((truth > 0.5).sum()) and stats.area is None
    assert f"{stats.changed} of 3500" in stats.summary()


def test_detect_multiclass_writes_class_ids(tmp_path):
    class ThreeClasses(EchoModel):
        def mask_logits(self, images, instructions=None):
            red = images[:, 1, :1]
            return torch.cat([1 - red, red, torch.zeros_like(red)], dim=1) * 10

    before, out = tmp_path / "a.png", tmp_path / "change.png"
    truth = _gradient(before, 40, 40)
    detect(ThreeClasses(), before, before, out, overlap=4, progress=False)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), (truth > 0.5).astype(np.uint8))


def test_detect_refuses_pairs_of_different_sizes(tmp_path):
    _gradient(tmp_path / "a.png", 40, 40)
    _gradient(tmp_path / "b.png", 41, 40)
    with pytest.raises(ValueError, match=r"a\.png and .*b\.png do not cover the same grid \(size 40x40 vs 41x40"):
        detect(ConstantModel(), tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png", progress=False)
    with pytest.raises(FileNotFoundError, match=r"nope\.png"):
        detect(ConstantModel(), tmp_path / "a.png", tmp_path / "nope.png", tmp_path / "c.png", progress=False)


def test_sixteen_bit_geotiff_is_scaled_and_georeference_kept(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    transform = from_origin(100.0, 200.0, 10.0, 10.0)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, (4, 40, 50)).astype(np.uint16)  # 4 bands: the first 3 are used
    path = tmp_path / "s.tif"
    with rasterio.open(path, "w", driver="GTiff", width=50, height=40, count=4, dtype="uint16",
                       crs="EPSG:32631", transform=transform) as dst:  # fmt: skip
        dst.write(data)
    with RasterReader(path) as reader:
        assert reader.info.pixel_area == 100.0 and reader.info.bands == 4
        window = reader.read(5, 7, 10, 12)
    assert window.shape == (10, 12, 3) and window.dtype == np.float32
    np.testing.assert_allclose(window[..., 0], data[0, 5:15, 7:19] / 65535, atol=1e-7)  # training's one scaling
    stats = detect(ConstantModel(0.9), path, path, tmp_path / "m.tif", overlap=4, progress=False)
    assert stats.changed == 2000 and stats.area == 200000.0
    with rasterio.open(tmp_path / "m.tif") as src:
        assert src.transform == transform and src.crs.to_epsg() == 32631 and (src.read(1) == 255).all()


class FailingModel(ConstantModel):
    """Fails on its third batch, as a crash mid-scene would."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def mask_logits(self, images: torch.Tensor, instructions: list[str] | None = None) -> torch.Tensor:
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("out of memory")
        return super().mask_logits(images)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_a_failed_run_leaves_the_previous_output_whole_and_no_partial_file(tmp_path, suffix):
    path = tmp_path / "a.png"
    _gradient(path, 150, 130)
    out = tmp_path / f"change{suffix}"
    detect(ConstantModel(0.9), path, path, out, overlap=4, batch=2, progress=False)
    before = out.read_bytes()
    with pytest.raises(RuntimeError, match="out of memory"):
        detect(FailingModel(), path, path, out, overlap=4, batch=2, progress=False)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.png", out.name])
