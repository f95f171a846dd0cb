"""The serving parts that need no Ray: metrics text, remote image fetching, change-mask answers."""

import base64
import http.server
import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from rsforge.serve.errors import APIError
from rsforge.serve.masks import detect_response, parse_detect_request
from rsforge.serve.prometheus import Metrics, parse_prometheus, quantile
from rsforge.serve.regions import count_regions
from rsforge.serve.remote import ImageFetcher
from rsforge.serve.scenes import SceneMask


def png(color=(0, 0, 255), side: int = 20) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), color).save(buf, format="PNG")
    return buf.getvalue()


def test_metrics_render_prometheus_text():
    metrics = Metrics()
    for seconds in (0.02, 0.03, 0.2, 4.0):
        metrics.observe_request("/v1/chat/completions", 200, seconds)
    metrics.observe_request("/v1/chat/completions", 400, 0.001)
    for size in (1, 4, 4):
        metrics.observe_batch(size)
    text = metrics.render()
    assert "# TYPE rsforge_requests_total counter" in text and text.endswith("\n")
    values = parse_prometheus(text)
    route = 'route="/v1/chat/completions"'
    assert values[f'rsforge_requests_total{{{route},status="200"}}'] == 4
    assert values[f'rsforge_requests_total{{{route},status="400"}}'] == 1
    assert values[f'rsforge_request_duration_seconds_bucket{{{route},le="0.05"}}'] == 3  # cumulative buckets
    assert values[f'rsforge_request_duration_seconds_bucket{{{route},le="+Inf"}}'] == 5
    assert values[f'rsforge_request_latency_seconds{{{route},quantile="0.5"}}'] == 0.03
    assert values[f'rsforge_request_latency_seconds{{{route},quantile="0.99"}}'] == 4.0
    assert values['rsforge_batch_size_bucket{le="2"}'] == 1 and values["rsforge_batch_size_sum"] == 9


def test_nearest_rank_quantiles():
    values = [float(v) for v in range(1, 101)]
    assert (quantile(values, 0.5), quantile(values, 0.99), quantile(values, 1.0)) == (50.0, 99.0, 100.0)
    assert quantile([], 0.5) == 0.0


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            threading.Event().wait(2)  # longer than the fetcher's timeout
        if self.path == "/trickle":  # headers at once, then a byte every 0.2 s: each read is quick
            self.send_response(200)
            self.send_header("Content-Length", "40")
            self.end_headers()
            for _ in range(40):
                self.wfile.write(b"\0")
                self.wfile.flush()
                threading.Event().wait(0.2)
            return
        if self.path == "/moved":
            self.send_response(301)
            self.send_header("Location", "http://10.0.0.1/")
            self.end_headers()
            return
        body = b"\0" * 1000 if self.path == "/big" else png(side=8)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def host():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def test_fetcher_reads_only_allowed_hosts_with_limits(host):
    fetch = ImageFetcher(["127.0.0.1"], max_bytes=300, timeout_s=0.5)
    assert Image.open(io.BytesIO(fetch(f"http://{host}/a.png", "url"))).size == (8, 8)
    cases = [
        (f"http://localhost:{host.split(':')[1]}/a.png", 400, "'localhost' is not on this server's image-host"),
        ("http://169.254.169.254/latest/meta-data", 400, "not on this server's image-host allow-list"),
        (f"http://user:pw@{host}/a.png", 400, "credentials"),
        ("ftp://127.0.0.1/a.png", 400, "not an http(s) URL"),
        (f"http://{host}/moved", 400, "redirect to http://10.0.0.1/ not followed"),
        (f"http://{host}/big", 413, "larger than 300 bytes"),
        (f"http://{host}/slow", 400, "timed out"),
    ]
    for url, status, words in cases:
        with pytest.raises(APIError) as info:
            fetch(url, "messages[0].content[1].image_url.url")
        assert (info.value.status, info.value.param) == (status, "messages[0].content[1].image_url.url")
        assert words in info.value.message, (url, info.value.message)


def test_regions_are_8_connected_components():
    mask = np.zeros((6, 6), np.uint8)
    mask[0, 0] = mask[1, 1] = 255  # diagonal neighbours: one region
    mask[4:6, 4:6] = 255
    mask[0, 5] = 255
    assert count_regions(mask) == 3
    assert count_regions(np.zeros((4, 4), np.uint8)) == 0


def scene(mask: np.ndarray) -> SceneMask:
    return SceneMask(mask, None, None, None, 1)


def test_detect_response_png_and_geojson():
    mask = np.zeros((8, 8), np.uint8)
    mask[1:3, 1:4] = 255
    out = detect_response("m", scene(mask), "png")
    assert out["stats"] == {"changed_pixels": 6, "changed_fraction": 6 / 64, "changed_area": None, "regions": 1,
                            "tiles": 1}
    assert (out["crs"], out["transform"]) == (None, None)
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(out["mask_png"].split(",", 1)[1]))))
    assert (decoded == mask).all()
    geo = detect_response("m", scene(mask), "geojson")["geojson"]
    (feature,) = geo["features"]
    assert feature["properties"] == {"value": 255}
    xs, ys = zip(*feature["geometry"]["coordinates"][0], strict=True)
    assert (min(xs), max(xs), min(ys), max(ys)) == (1, 4, 1, 3)  # pixel coordinates, x right, y down


def test_parse_detect_request():
    url = "data:image/png;base64," + base64.b64encode(png()).decode()
    parsed = parse_detect_request({"before": url, "after": url, "format": "geojson", "threshold": 0.3},
                                  model_name="m")
    assert parsed.before == parsed.after == png() and (parsed.format, parsed.threshold) == ("geojson", 0.3)
    for body, param in [({"before": url, "after": url, "threshold": 1.5}, "threshold"),
                        ({"before": url, "after": url, "extra": 1}, "extra"),
                        ({"before": "data:image/png;base64,aGVsbG8=", "after": url}, "before")]:
        with pytest.raises(APIError) as info:
            parse_detect_request(body, model_name="m")
        assert info.value.status == 400 and info.value.param == param


def test_geojson_without_rasterio_is_a_clear_501(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_rasterio(name, *args, **kwargs):
        if name.startswith("rasterio"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_rasterio)
    with pytest.raises(APIError) as info:
        detect_response("m", scene(np.full((2, 2), 255, np.uint8)), "geojson")
    assert info.value.status == 501 and "rasterio" in info.value.message


def test_a_fetch_has_a_total_deadline_not_one_per_read(host):
    fetch = ImageFetcher(["127.0.0.1"], max_bytes=300, timeout_s=1.0)
    start = time.monotonic()
    with pytest.raises(APIError, match="did not arrive within 1 s") as info:
        fetch(f"http://{host}/trickle", "before")
    # Per read, the 1 s timeout never fires: the whole body would take 8 s.
    assert info.value.param == "before" and time.monotonic() - start < 2.5


def test_requests_naming_remote_images_are_told_apart():
    from rsforge.serve.remote import names_remote_image

    part = {"type": "image_url", "image_url": {"url": "https://tiles.example.org/a.png"}}
    assert names_remote_image({"messages": [{"role": "user", "content": [part]}]})
    assert names_remote_image({"before": "http://h/a.png", "after": "data:image/png;base64,AA=="})
    inline = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}
    text = {"type": "text", "text": "see https://example.org"}
    assert not names_remote_image({"messages": [{"role": "user", "content": [text, inline]}, "junk"]})
    assert not names_remote_image([1, 2]) and not names_remote_image({"messages": "x"})
