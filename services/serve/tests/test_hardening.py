"""Issue 20, without Ray: a bad request fails only itself, limits hold at the edge before expensive
work, hostile images and JSON are 400s, server faults hide their details, and the OpenAPI schema
describes the POST routes."""

import io
import json
import struct
import time
import zlib

import pytest
from PIL import Image

from rsforge.serve.errors import APIError
from rsforge.serve.images import decode_image
from rsforge.serve.limits import Limits
from rsforge.serve.openai_requests import load_json, parse_chat_request

SIZE = 16


def png(width: int, height: int, chunks: list[tuple[bytes, bytes]] = ()) -> bytes:
    """An all-zero RGB PNG with extra `chunks` (type, data) right after its header."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height)).save(buf, format="PNG")
    raw = buf.getvalue()
    extra = b"".join(struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d)) for t, d in chunks)
    return raw[:33] + extra + raw[33:]  # signature (8) + IHDR chunk (25)


def url(raw: bytes) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(raw).decode()


def body(*texts: str, **overrides) -> dict:
    content = [*({"type": "text", "text": t} for t in texts),
               {"type": "image_url", "image_url": {"url": url(png(8, 8))}}]
    return {"model": "m", "messages": [{"role": "user", "content": content}]} | overrides


def parse(request: dict, **kwargs):
    return parse_chat_request(request, model_name="m", num_images=1, image_size=SIZE, **kwargs)


def refused(call, status=400) -> APIError:
    with pytest.raises(APIError) as info:
        call()
    assert info.value.status == status, info.value.message
    return info.value


def test_text_a_tokenizer_cannot_encode_is_a_400_naming_the_part():
    error = refused(lambda: parse(body("fine", "x \ud800 y")))
    assert error.param == "messages[0].content[1].text" and "surrogate" in error.message
    error = refused(lambda: parse({"model": "m", "messages": [{"role": "user", "content": "\udfff"}]}))
    assert error.param == "messages[0].content"


def test_errors_that_echo_a_lone_surrogate_can_still_be_sent():
    from fastapi.responses import JSONResponse

    unknown_model = refused(lambda: parse(body("hi", model="\ud800")), 404)
    unknown_field = refused(lambda: parse(body("hi", **{"\ud800": 1})))
    assert (unknown_model.param, unknown_field.param) == ("model", "\\ud800")
    for error in (unknown_model, unknown_field):
        assert b"\\ud800" in JSONResponse(error.to_dict()).body  # before: UnicodeEncodeError, a 500


def test_text_limits_per_part_in_total_and_by_the_token_estimate():
    limits = Limits(max_text_chars=10, max_total_text_chars=15)
    assert refused(lambda: parse(body("x" * 11), limits=limits)).param == "messages[0].content[0].text"
    assert refused(lambda: parse(body("x" * 8, "y" * 8), limits=limits)).code == "text_too_long"
    # Each word is at least one token, so 20 words cannot fit a context of 12 tokens.
    error = refused(lambda: parse(body("word " * 20), max_context=12))
    assert error.param == "messages" and "exceeds the decoder context of 12" in error.message
    assert parse(body("word " * 5), max_context=12).conversation[0].text.startswith("word")


def test_a_huge_all_zero_png_is_refused_from_its_header_in_milliseconds():
    raw = png(8192, 8192)  # ~200 KB on the wire, 192 MiB of pixels
    start = time.perf_counter()
    error = refused(lambda: decode_image(raw, SIZE, "bilinear", "before"))
    assert time.perf_counter() - start < 0.1 and "refused before decoding" in error.message


def test_a_jpeg_is_decoded_at_the_size_the_model_needs(monkeypatch):
    buf = io.BytesIO()
    Image.new("RGB", (2048, 2048), (200, 10, 10)).save(buf, format="JPEG")
    seen = []
    resize = Image.Image.resize
    monkeypatch.setattr(Image.Image, "resize", lambda self, *a, **k: seen.append(self.size) or resize(self, *a, **k))
    tensor = decode_image(buf.getvalue(), 64, "bilinear", "before")
    assert tensor.shape == (3, 64, 64) and tensor[0].mean() > 0.7
    assert seen == [(256, 256)]  # DCT scaling decoded 1/8 of each side, never the full 2048 x 2048


@pytest.mark.parametrize("kind", [b"zTXt", b"iCCP"])
def test_png_chunks_that_inflate_too_far_are_a_400(kind):
    bomb = b"k\x00\x00" + zlib.compress(b"\x00" * (50 * 1024 * 1024), 9)
    error = refused(lambda: decode_image(png(8, 8, [(kind, bomb)]), SIZE, "bilinear", "after"))
    assert error.param == "after"


@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000, b'{"max_tokens": ' + b"9" * 5000 + b"}"],
                         ids=["nested-100000-deep", "5000-digit-integer"])
def test_hostile_json_is_a_400(raw):
    assert "not valid JSON" in refused(lambda: load_json(raw)).message


def test_a_temperature_too_cold_to_sample_is_decoded_greedily():
    assert parse(body("hi", temperature=1e-40)).temperature == 0.0
    assert parse(body("hi", temperature=0.5)).temperature == 0.5
    assert refused(lambda: parse(body("hi", temperature=1e-40, n=2))).param == "n"


def test_server_faults_hide_their_details_and_unavailable_replicas_are_503():
    from ray.exceptions import RayActorError

    from rsforge.serve.ingress import server_fault

    response = server_fault(RuntimeError("actor 7f3a pid=4242 node 10.0.0.7 died"))
    error = json.loads(response.body)["error"]
    assert response.status_code == 500 and error["type"] == "server_error"
    assert "4242" not in error["message"] and response.headers["x-request-id"] in error["message"]
    response = server_fault(RayActorError())
    assert response.status_code == 503 and response.headers["retry-after"].isdigit()


def test_openapi_describes_post_bodies_and_errors():
    from rsforge.serve.ingress import api

    schema = api.openapi()
    components = schema["components"]["schemas"]
    routes = (("/v1/chat/completions", "ChatCompletionRequest"), ("/v1/change/detect", "ChangeDetectRequest"))
    for path, model in routes:
        post = schema["paths"][path]["post"]
        ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{model}" and model in components
        for status in ("400", "401", "404", "413", "500", "503"):
            assert post["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
    assert {"model", "messages"} <= set(components["ChatCompletionRequest"]["required"])
    refs = [v for v in json.dumps(schema).split('"') if v.startswith("#/components/schemas/")]
    assert all(r.rsplit("/", 1)[1] in components for r in refs)



def test_an_ingress_crash_answers_in_openai_shape_without_its_details(monkeypatch):
    from types import SimpleNamespace

    from starlette.testclient import TestClient

    from rsforge.serve.ingress import api
    from rsforge.serve.prometheus import Metrics

    # Outside a Serve replica every route crashes (it cannot find its deployment instance): a stand-in
    # for any bug in the ingress.
    monkeypatch.setattr(api.state, "ingress", SimpleNamespace(api_key=None, metrics=Metrics()), raising=False)
    response = TestClient(api, raise_server_exceptions=False).get("/healthz")
    assert response.status_code == 500 and response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == "server_error" and response.headers["x-request-id"] in error["message"]
    assert "Serve" not in error["message"] and "replica" not in error["message"]
