"""`rsforge detect` end to end: a 3000 x 3000 georeferenced pair built from synthetic 64 px pairs with a
known mask, the tiny mask recipe trained on other synthetic pairs, and the written GeoTIFF checked
against the truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsforge.core.cli import main
from rsforge.datasets.synth import generate

from .mask_model import train_tiny_mask_model

rasterio = pytest.importorskip("rasterio")
from rasterio.transform import from_origin  # noqa: E402

SIDE, CELL = 3000, 64
CRS = "EPSG:32631"
TRANSFORM = from_origin(500000.0, 5000000.0, 0.5, 0.5)  # 0.5 m pixels: 0.25 m² each


def _pairs(root: Path, splits: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 64, 64, 3) before, after and (N, 64, 64) bool masks of the synthetic pairs in `splits`."""
    names = [(s, p.name) for s in splits for p in sorted((root / s / "A").iterdir())]
    read = lambda sub, conv: np.stack([np.asarray(Image.open(root / s / sub / n).convert(conv)) for s, n in names])  # noqa: E731
    return read("A", "RGB"), read("B", "RGB"), read("label", "L") > 127


def _mosaic(pairs: tuple[np.ndarray, np.ndarray, np.ndarray], seed: int) -> tuple[np.ndarray, ...]:
    """SIDE x SIDE before / after / mask from random pairs, each flipped or rotated at random."""
    before, after, masks = pairs
    rng = np.random.default_rng(seed)
    n = -(-SIDE // CELL)
    out = [np.zeros((n * CELL, n * CELL, 3), np.uint8), np.zeros((n * CELL, n * CELL, 3), np.uint8),
           np.zeros((n * CELL, n * CELL), bool)]  # fmt: skip
    for i in range(n):
        for j in range(n):
            k, turns = rng.integers(len(before)), int(rng.integers(4))
            for dst, src in zip(out, (before, after, masks), strict=True):
                dst[i * CELL : (i + 1) * CELL, j * CELL : (j + 1) * CELL] = np.rot90(src[k], turns)
    return tuple(a[:SIDE, :SIDE] for a in out)


def _write_geotiff(path: Path, rgb: np.ndarray) -> None:
    profile = {"driver": "GTiff", "width": SIDE, "height": SIDE, "count": 3, "dtype": "uint8", "crs": CRS,
               "transform": TRANSFORM, "tiled": True, "blockxsize": 256, "blockysize": 256}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(rgb.transpose(2, 0, 1))


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("detect")
    root = generate(tmp / "synth", 160, seed=3, size=CELL, progress=False)
    model = train_tiny_mask_model(tmp / "model")  # trained on its own synthetic seed: these pairs are unseen
    before, after, truth = _mosaic(_pairs(root, ("val", "test")), seed=0)
    _write_geotiff(tmp / "before.tif", before)
    _write_geotiff(tmp / "after.tif", after)
    return {"tmp": tmp, "model": model, "truth": truth}


def test_detect_geotiff_keeps_georeference_and_finds_the_changes(scene, capsys):
    tmp = scene["tmp"]
    out, polygons = tmp / "change.tif", tmp / "change.geojson"
    code = main(["detect", "--model", str(scene["model"]), "--before", str(tmp / "before.tif"),
                 "--after", str(tmp / "after.tif"), "--out", str(out), "--batch", "64",
                 "--geojson", str(polygons)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    with rasterio.open(tmp / "before.tif") as ref, rasterio.open(out) as src:
        assert (src.crs, src.transform, src.width, src.height) == (ref.crs, ref.transform, SIDE, SIDE)
        assert src.dtypes == ("uint8",)
        pred = src.read(1)
    assert set(np.unique(pred).tolist()) <= {0, 255}
    pred, truth = pred > 0, scene["truth"]
    f1 = 2 * np.sum(pred & truth) / (pred.sum() + truth.sum())
    print(f"F1 on the {SIDE} px pair: {f1:.3f}")
    assert f1 >= 0.8
    changed = int(pred.sum())
    assert f"changed pixels: {changed} of {SIDE * SIDE}" in printed
    assert f"changed area: {changed * 0.25:.6g} map units²" in printed
    features = json.loads(polygons.read_text())["features"]
    assert features and all(f["properties"]["value"] == 255 for f in features)
    x, y = features[0]["geometry"]["coordinates"][0][0]
    assert 500000 <= x <= 500000 + SIDE * 0.5 and 5000000 - SIDE * 0.5 <= y <= 5000000  # map coordinates


def test_detect_refuses_inputs_on_different_grids(scene, capsys):
    tmp = scene["tmp"]
    shifted = tmp / "shifted.tif"
    with rasterio.open(tmp / "after.tif") as src:
        profile = src.profile | {"transform": from_origin(500010.0, 5000000.0, 0.5, 0.5)}
        with rasterio.open(shifted, "w", **profile) as dst:
            dst.write(src.read())
    code = main(["detect", "--model", str(scene["model"]), "--before", str(tmp / "before.tif"),
                 "--after", str(shifted), "--out", str(tmp / "never.tif")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "do not cover the same grid" in err and "shifted.tif" in err and "geotransform" in err
    assert not (tmp / "never.tif").exists()
