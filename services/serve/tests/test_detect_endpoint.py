"""`POST /v1/change/detect` masks whole scenes as `rsforge detect` does (issue 20, item 11): tiled and
blended at native resolution by the same code, GeoTIFF in and georeferenced GeoJSON out, a `prompt`
that reaches text-guided heads, and a pixel limit of its own, larger than chat's."""

import base64
import io
import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image

from rsforge.core.model import RSForgeModel
from rsforge.core.plugins import PluginManager
from rsforge.geo.rasters import mask_polygons
from rsforge.geo.tiling import TiledPredictor, detect
from rsforge.serve.client import data_url
from rsforge.serve.errors import APIError
from rsforge.serve.limits import DEFAULT_LIMITS, Limits
from rsforge.serve.masks import detect_response, parse_detect_request
from rsforge.serve.scenes import detect_scene

from .conftest import MAX_DETECT_PIXELS, MAX_IMAGE_PIXELS, save_model

ORIGIN, PIXEL = (500_000.0, 4_000_000.0), 10.0  # UTM zone 31N, 10 m pixels


def scenes(width: int, height: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A (3, H, W) uint8 before scene and an after scene with a bright new block."""
    before = np.random.default_rng(seed).integers(0, 256, (3, height, width), dtype=np.uint8)
    after = before.copy()
    after[:, height // 4 : height // 2, width // 4 : 3 * width // 4] = 250
    return before, after


def geotiff(array: np.ndarray) -> bytes:
    with rasterio.MemoryFile() as memory:
        with memory.open(driver="GTiff", width=array.shape[2], height=array.shape[1], count=3, dtype="uint8",
                         crs="EPSG:32631", transform=Affine(PIXEL, 0, ORIGIN[0], 0, -PIXEL, ORIGIN[1])) as dst:
            dst.write(array)
        return memory.read()


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.transpose(1, 2, 0)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("detect-models")
    plugins = PluginManager()
    return {name: RSForgeModel.from_pretrained(save_model(recipe, root / name), plugins=plugins).eval()
            for name, recipe in (("pair", "tiny.yaml"), ("segchange", "segchange-tiny.yaml"))}


def test_a_scene_is_masked_at_native_resolution_by_the_code_of_rsforge_detect(models, tmp_path):
    model = models["pair"]  # reads 32 x 32: the old endpoint scored a 100 x 70 upload as a 32 x 32 thumbnail
    before, after = scenes(100, 70)
    scene = detect_scene(model, png(before), png(after), threshold=0.5)
    assert scene.mask.shape == (70, 100) and scene.mask.dtype == np.uint8
    assert scene.tiles == TiledPredictor(model).tile_count(100, 70) > 1
    for name, array in (("before", before), ("after", after)):
        (tmp_path / f"{name}.png").write_bytes(png(array))
    detect(model, tmp_path / "before.png", tmp_path / "after.png", tmp_path / "mask.png", progress=False)
    assert (scene.mask == np.asarray(Image.open(tmp_path / "mask.png"))).all()  # the CLI's mask, pixel for pixel
    assert (scene.transform, scene.crs, scene.pixel_area) == (None, None, None)


def test_a_geotiff_comes_back_as_the_georeferenced_geojson_of_the_cli(models, tmp_path):
    model = models["pair"]
    before, after = scenes(96, 80)
    body = {"before": data_url(geotiff(before)), "after": data_url(geotiff(after)), "format": "geojson",
            "threshold": 0.3}
    request = parse_detect_request(body, model_name="pair")
    scene = detect_scene(model, request.before, request.after, threshold=request.threshold)
    out = detect_response("pair", scene, request.format)
    assert (out["width"], out["height"], out["crs"]) == (96, 80, "EPSG:32631")
    assert out["transform"] == [ORIGIN[0], PIXEL, 0.0, ORIGIN[1], 0.0, -PIXEL]
    assert out["stats"]["changed_area"] == out["stats"]["changed_pixels"] * PIXEL**2
    geo = out["geojson"]
    assert geo["crs"]["properties"]["name"] == "EPSG:32631" and geo["features"]

    # `rsforge detect --geojson` on the same files writes the same polygons.
    for name, data in (("before", request.before), ("after", request.after)):
        (tmp_path / f"{name}.tif").write_bytes(data)
    detect(model, tmp_path / "before.tif", tmp_path / "after.tif", tmp_path / "mask.tif", threshold=0.3,
           progress=False)
    mask_polygons(tmp_path / "mask.tif", tmp_path / "mask.geojson")
    assert json.loads((tmp_path / "mask.geojson").read_text()) == json.loads(json.dumps(geo))
    xs = [x for f in geo["features"] for x, _ in f["geometry"]["coordinates"][0]]
    assert ORIGIN[0] <= min(xs) and max(xs) <= ORIGIN[0] + 96 * PIXEL  # map coordinates, not pixels


def test_the_prompt_reaches_a_text_guided_head_for_every_tile(models, monkeypatch):
    model = models["segchange"]
    before, after = png(scenes(100, 90)[0]), png(scenes(100, 90)[1])
    seen = []
    real = model.mask_logits

    def spy(images, instructions=None, **kwargs):
        seen.append(instructions)
        return real(images, instructions, **kwargs)

    monkeypatch.setattr(model, "mask_logits", spy)
    masks = {prompt: detect_scene(model, before, after, threshold=0.5, prompt=prompt).mask
             for prompt in (None, "new buildings", "trees cut down")}
    tiles = TiledPredictor(model).tile_count(100, 90)
    calls = len(seen) // 3
    assert seen[:calls] == [None] * calls  # no prompt: the head's own default
    assert all(i == ["new buildings"] * len(i) for i in seen[calls : 2 * calls])
    assert sum(len(i) for i in seen[calls : 2 * calls]) == tiles
    # An untrained head already reads the text: the three masks differ.
    assert not (masks[None] == masks["new buildings"]).all()
    assert not (masks["new buildings"] == masks["trees cut down"]).all()


def test_detection_uploads_are_checked_from_their_headers_against_their_own_limit():
    def refused(body, limits=DEFAULT_LIMITS):
        with pytest.raises(APIError) as info:
            parse_detect_request(body, model_name="m", limits=limits)
        return info.value

    big = data_url(png(np.zeros((3, 5000, 5000), np.uint8)))  # 25 MP: over chat's 16.7 MP default, under 67 MP
    assert parse_detect_request({"before": big, "after": big}, model_name="m").prompt is None
    error = refused({"before": big, "after": big}, Limits(max_detect_pixels=4096 * 4096))
    assert (error.status, error.param) == (400, "before") and "max_detect_pixels" in error.message
    tif = data_url(geotiff(np.zeros((3, 300, 200), np.uint8)))
    error = refused({"before": tif, "after": tif}, Limits(max_detect_pixels=200 * 299))
    assert "200x300" in error.message  # a GeoTIFF's size comes from its header too
    small = data_url(png(np.zeros((3, 20, 30), np.uint8)))
    assert refused({"before": tif, "after": small}).param == "after"  # two grids that differ
    assert refused({"before": small, "after": small, "prompt": ""}).param == "prompt"
    assert refused({"before": small, "after": small, "prompt": "x" * 40_000}).code == "text_too_long"
    not_image = "data:image/tiff;base64," + base64.b64encode(b"II*\x00 not really").decode()
    assert "TIFF header" in refused({"before": not_image, "after": small}).message


def post(app, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(app.url + "/change/detect", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.ray
def test_over_http_geotiff_in_georeferenced_geojson_out_with_a_prompt(live_app):
    before, after = scenes(96, 80)  # 7,680 px: over the chat limit of this app, under its detection limit
    assert MAX_IMAGE_PIXELS < 96 * 80 < MAX_DETECT_PIXELS
    body = {"model": "segchange", "before": data_url(geotiff(before)), "after": data_url(geotiff(after)),
            "format": "geojson", "prompt": "new buildings"}
    status, out = post(live_app, body)
    assert status == 200, out
    assert (out["width"], out["height"], out["crs"]) == (96, 80, "EPSG:32631")
    assert out["geojson"]["crs"]["properties"]["name"] == "EPSG:32631"
    status, other = post(live_app, {**body, "prompt": "trees cut down"})
    assert status == 200 and other["geojson"] != out["geojson"]  # the prompt reached the head

    status, out = post(live_app, {**body, "model": "pair", "format": "png"})
    assert status == 200, out
    mask = Image.open(io.BytesIO(base64.b64decode(out["mask_png"].split(",", 1)[1])))
    assert mask.size == (96, 80) and out["stats"]["changed_pixels"] == np.count_nonzero(np.asarray(mask))

    huge = data_url(geotiff(np.zeros((3, 250, 250), np.uint8)))
    status, out = post(live_app, {**body, "before": huge, "after": huge})
    assert status == 400 and "max_detect_pixels" in out["error"]["message"], out
