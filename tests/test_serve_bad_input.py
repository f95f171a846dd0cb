"""Bad input over HTTP: each gets a 4xx in OpenAI's error shape naming the problem, and the replica
keeps serving (a valid request right after must succeed). The server here also requires an API key
and allows remote images from one host (a local HTTP server)."""

import concurrent.futures
import http.server
import io
import json
import struct
import threading
import urllib.error
import urllib.request
import zlib
from typing import Any

import pytest
from PIL import Image

from rsforge.serve.client import data_url, image_message

from .conftest import free_port

pytestmark = pytest.mark.ray

KEY = "test-secret-key"
BEFORE, AFTER = Image.new("RGB", (40, 40), (10, 200, 10)), Image.new("RGB", (40, 40), (200, 200, 10))


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def forged_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels (how a decompression bomb looks before decoding)."""
    raw = bytearray(png_bytes(Image.new("RGB", (1, 1))))
    ihdr = 16
    raw[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    raw[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(raw[ihdr - 4 : ihdr + 13])))
    return bytes(raw)


def ztxt_bomb_png() -> bytes:
    """A valid PNG with a zTXt chunk that inflates to 50 MB (Pillow refuses it with a ValueError)."""
    raw = png_bytes(Image.new("RGB", (8, 8)))
    data = b"k\x00\x00" + zlib.compress(b"\x00" * (50 * 1024 * 1024), 9)
    chunk = struct.pack(">I", len(data)) + b"zTXt" + data + struct.pack(">I", zlib.crc32(b"zTXt" + data))
    return raw[:33] + chunk + raw[33:]  # after the signature and the IHDR chunk


class _Images(http.server.BaseHTTPRequestHandler):
    """Serves /before.png, /after.png and /redirect (to another host)."""

    def do_GET(self):
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data")
            self.end_headers()
            return
        body = {"/before.png": png_bytes(BEFORE), "/after.png": png_bytes(AFTER)}.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def image_host():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def server(ray_session, tiny_model_dir, image_host):
    from ray import serve

    from rsforge.serve.app import run
    from rsforge.serve.settings import ServeConfig

    config = ServeConfig(models=[{"path": str(tiny_model_dir), "name": "pair"}], port=free_port(), api_key=KEY,
                         allow_image_hosts=["127.0.0.1"], max_body_bytes=MAX_BODY)
    app = run(config, blocking=False)
    yield app
    serve.shutdown()


def post(server, path: str, body: bytes | dict, key: str | None = KEY) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    request = urllib.request.Request(server.url.removesuffix("/v1") + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def chat(text="describe the changes", images=(BEFORE, AFTER), **overrides) -> dict:
    return {"model": "pair", "messages": [image_message(text, *images)], "max_tokens": 4} | overrides


def with_urls(*urls: str) -> dict:
    content = [{"type": "text", "text": "describe"}, *({"type": "image_url", "image_url": {"url": u}} for u in urls)]
    return {"model": "pair", "messages": [{"role": "user", "content": content}], "max_tokens": 4}


def assert_still_serving(server) -> None:
    status, body = post(server, "/v1/chat/completions", chat())
    assert status == 200, body
    assert isinstance(body["choices"][0]["message"]["content"], str)


URL = "messages[0].content[1].image_url.url"
TEXT = "messages[0].content[0].text"
MAX_BODY = 2_000_000
GOOD = data_url(AFTER)
CASES = [
    ("malformed-json", "/v1/chat/completions", b"{oops", 400, None, "not valid JSON"),
    ("body-not-object", "/v1/chat/completions", b"[1, 2]", 400, None, "JSON object"),
    ("unknown-model", "/v1/chat/completions", chat(model="gpt-4o"), 404, "model", "'gpt-4o' does not exist"),
    ("no-image", "/v1/chat/completions", chat(images=()), 400, "messages", "hold 0 images"),
    ("three-images", "/v1/chat/completions", chat(images=(BEFORE, AFTER, AFTER)), 400, "messages", "hold 3 images"),
    ("broken-base64", "/v1/chat/completions", with_urls("data:image/png;base64,@@not*base64", GOOD), 400, URL,
     "not valid base64"),
    ("not-an-image", "/v1/chat/completions", with_urls(data_url(b"hello, not a png"), GOOD), 400, URL, "not an image"),
    ("decompression-bomb", "/v1/chat/completions", with_urls(data_url(forged_png(20000, 20000)), GOOD), 400, URL,
     "decompression bomb"),
    ("over-pixel-limit", "/v1/chat/completions", with_urls(data_url(forged_png(9000, 9000)), GOOD), 400, URL,
     "over the limit"),
    ("prompt-over-context", "/v1/chat/completions", chat(text="many words " * 150), 400, "messages",
     "exceeds the decoder context"),
    ("max-tokens-zero", "/v1/chat/completions", chat(max_tokens=0), 400, "max_tokens", "between 1 and 512"),
    ("max-tokens-huge", "/v1/chat/completions", chat(max_tokens=100_000), 400, "max_tokens", "between 1 and 512"),
    ("max-tokens-string", "/v1/chat/completions", chat(max_tokens="8"), 400, "max_tokens", "must be an integer"),
    ("temperature-string", "/v1/chat/completions", chat(temperature="hot"), 400, "temperature", "must be a number"),
    ("messages-not-array", "/v1/chat/completions", chat(messages="hi"), 400, "messages", "non-empty array"),
    ("stream-not-bool", "/v1/chat/completions", chat(stream="yes"), 400, "stream", "must be a boolean"),
    ("n-without-sampling", "/v1/chat/completions", chat(n=2), 400, "n", "needs sampling"),
    ("remote-host-not-allowed", "/v1/chat/completions", with_urls("http://169.254.169.254/latest", GOOD), 400, URL,
     "not on this server's image-host allow-list"),
    ("detect-broken-base64", "/v1/change/detect",
     {"model": "pair", "before": "data:image/png;base64,@@", "after": GOOD}, 400, "before", "not valid base64"),
    ("detect-bad-format", "/v1/change/detect", {"model": "pair", "before": GOOD, "after": GOOD, "format": "tiff"},
     400, "format", "'format' must be one of"),
    ("detect-missing-after", "/v1/change/detect", {"model": "pair", "before": GOOD}, 400, "after", "is required"),
    # Issue 20: each of these was a 500 (or cost the replica minutes) before.
    ("lone-surrogate", "/v1/chat/completions", chat(text="x \ud800 y"), 400, TEXT, "lone surrogate"),
    ("surrogate-in-model", "/v1/chat/completions", chat(model="\ud800"), 404, "model", "does not exist"),
    ("text-part-too-long", "/v1/chat/completions", chat(text="x" * 40_000), 400, TEXT, "over the limit"),
    ("body-too-large", "/v1/chat/completions", chat(text="x " * MAX_BODY), 413, None, "over the limit"),
    ("json-nested-deep", "/v1/chat/completions", b"[" * 100_000 + b"]" * 100_000, 400, None, "nested too deeply"),
    ("json-5000-digit-integer", "/v1/chat/completions", b'{"model": "pair", "n": ' + b"9" * 5000 + b"}", 400, None,
     "not valid JSON"),
    ("png-ztxt-bomb", "/v1/chat/completions", with_urls(data_url(ztxt_bomb_png()), GOOD), 400, URL,
     "cannot read the image"),
    ("huge-all-zero-png", "/v1/chat/completions", with_urls(data_url(png_bytes(Image.new("RGB", (5000, 5000)))), GOOD),
     400, URL, "refused before decoding"),
]


@pytest.mark.parametrize(("path", "body", "status", "param", "words"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_input_is_a_4xx_naming_the_problem_and_serving_goes_on(server, path, body, status, param, words):
    got, answer = post(server, path, body)
    assert got == status, answer
    error = answer["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param and words in error["message"], error
    assert_still_serving(server)


def test_api_key_is_required(server):
    for key in (None, "wrong-key"):
        status, body = post(server, "/v1/chat/completions", chat(), key=key)
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
    status, _ = post(server, "/v1/change/detect", {"before": GOOD, "after": GOOD}, key=None)
    assert status == 401
    # Health checks and the page need no key.
    with urllib.request.urlopen(server.url.removesuffix("/v1") + "/healthz", timeout=30) as response:
        assert response.status == 200
    assert_still_serving(server)


def test_allowed_host_images_are_fetched_and_redirects_are_not_followed(server, image_host):
    urls = with_urls(f"{image_host}/before.png", f"{image_host}/after.png")
    status, body = post(server, "/v1/chat/completions", urls)
    assert status == 200, body
    for path, words in (("/redirect", "redirect"), ("/missing.png", "HTTP 404")):
        status, body = post(server, "/v1/chat/completions", with_urls(f"{image_host}{path}", GOOD))
        assert status == 400 and words in body["error"]["message"], body
    assert_still_serving(server)


def test_a_bad_request_in_a_batch_does_not_fail_the_others(server):
    bodies = [chat()] * 6 + [chat(text="many words " * 150), chat(text="x \ud800 y")]
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        results = list(pool.map(lambda b: post(server, "/v1/chat/completions", b), bodies))
    assert [status for status, _ in results] == [200] * 6 + [400, 400]


def test_a_temperature_too_cold_to_sample_is_answered_greedily(server):
    status, body = post(server, "/v1/chat/completions", chat(temperature=1e-40))
    assert status == 200, body
    assert body["choices"][0]["message"]["content"] == post(server, "/v1/chat/completions", chat())[1]["choices"][0][
        "message"]["content"]


def get(server, path: str, key: str | None = KEY) -> tuple[int, Any, dict]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(server.url.removesuffix("/v1") + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, json.loads(exc.read())


def test_405_names_the_allowed_methods_and_401_the_auth_scheme(server):
    status, headers, body = get(server, "/v1/chat/completions")
    assert status == 405 and headers["Allow"] == "POST" and body["error"]["type"] == "invalid_request_error"
    status, headers, body = get(server, "/v1/models", key=None)
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer" and body["error"]["code"] == "invalid_api_key"


def test_openapi_describes_the_post_bodies_and_their_errors(server):
    status, _, schema = get(server, "/openapi.json")
    assert status == 200
    chat_post = schema["paths"]["/v1/chat/completions"]["post"]
    assert chat_post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("ChatCompletionRequest")
    assert {"400", "401", "404", "413", "500", "503"} <= set(chat_post["responses"])
    assert "ChangeDetectRequest" in schema["components"]["schemas"]
