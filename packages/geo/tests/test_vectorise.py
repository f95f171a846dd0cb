"""`rsforge.geo.vectorise`: masks to GeoJSON polygons, in pixels or map coordinates, and the written
file of `rasters.mask_polygons`."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from rsforge.geo.vectorise import mask_features, mask_geojson, write_feature_collection

rasterio = pytest.importorskip("rasterio")
from affine import Affine  # noqa: E402


def _bounds(feature: dict) -> tuple[float, float, float, float]:
    xs, ys = zip(*feature["geometry"]["coordinates"][0], strict=True)
    return min(xs), max(xs), min(ys), max(ys)


def _as_json(value: dict) -> dict:
    return json.loads(json.dumps(value))  # coordinates come as tuples, read back as lists


def test_regions_become_polygons_in_pixel_coordinates():
    mask = np.zeros((8, 8), np.uint8)
    mask[1:3, 1:4] = 255
    mask[6:8, 6:8] = 255
    geo = mask_geojson(mask)
    assert geo["type"] == "FeatureCollection" and "crs" not in geo
    assert [f["properties"] for f in geo["features"]] == [{"value": 255}, {"value": 255}]
    assert sorted(_bounds(f) for f in geo["features"]) == [(1, 4, 1, 3), (6, 8, 6, 8)]  # x right, y down
    assert mask_geojson(np.zeros((4, 4), np.uint8))["features"] == []


def test_bool_masks_count_as_change_and_class_ids_keep_their_value():
    changed = np.zeros((4, 4), bool)
    changed[0, 0] = True
    (feature,) = mask_geojson(changed)["features"]
    assert feature["properties"] == {"value": 255}
    classes = np.zeros((4, 4), np.int64)
    classes[:2, :2], classes[2:, 2:] = 3, 7
    assert sorted(f["properties"]["value"] for f in mask_features(classes)) == [3, 7]
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        mask_geojson(np.zeros((1, 4, 4), np.uint8))


def test_a_transform_gives_map_coordinates_affine_or_gdal_order():
    mask = np.zeros((4, 4), np.uint8)
    mask[0, 0] = 255
    affine = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 5000000.0)
    for transform in (affine, affine.to_gdal()):
        (feature,) = mask_features(mask, transform)
        assert _bounds(feature) == (500000.0, 500000.5, 4999999.5, 5000000.0)
    geo = mask_geojson(mask, affine, crs="EPSG:32631")
    assert geo["crs"] == {"type": "name", "properties": {"name": "EPSG:32631"}}


def test_written_collection_is_the_same_geojson():
    mask = np.zeros((6, 6), np.uint8)
    mask[0:2, 0:2] = mask[4:6, 4:6] = 255
    out = io.StringIO()
    assert write_feature_collection(mask_features(mask), out, crs="EPSG:4326") == 2
    assert json.loads(out.getvalue()) == _as_json(mask_geojson(mask, crs="EPSG:4326"))
    empty = io.StringIO()
    assert write_feature_collection([], empty) == 0 and json.loads(empty.getvalue())["features"] == []


def test_mask_polygons_writes_a_georeferenced_mask_as_geojson(tmp_path):
    from rsforge.geo.rasters import mask_polygons

    mask = np.zeros((16, 16), np.uint8)
    mask[2:5, 3:9] = 255
    transform = Affine(2.0, 0.0, 1000.0, 0.0, -2.0, 2000.0)
    path = tmp_path / "mask.tif"
    with rasterio.open(path, "w", driver="GTiff", width=16, height=16, count=1, dtype="uint8",
                       crs="EPSG:32631", transform=transform) as dst:
        dst.write(mask[None])
    assert mask_polygons(path, tmp_path / "mask.geojson") == 1
    geo = json.loads((tmp_path / "mask.geojson").read_text())
    assert geo["crs"]["properties"]["name"] == "EPSG:32631"
    assert geo == _as_json(mask_geojson(mask, transform, crs="EPSG:32631"))
    assert _bounds(geo["features"][0]) == (1006.0, 1018.0, 1990.0, 1996.0)
