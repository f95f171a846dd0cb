"""OpenAI request parsing and validation, without Ray: every bad input is a 4xx naming the problem."""

import base64
import copy
import io
import json
import struct
import zlib

import pytest
import torch
from PIL import Image

from rsforge.core.sample import Turn
from rsforge.serve import images, openai_requests
from rsforge.serve.errors import APIError
from rsforge.serve.openai_requests import load_json, parse_chat_request, requested_model
from rsforge.serve.openai_responses import SSE_DONE, chat_chunk, chat_completion, model_list, sse, usage_chunk

MODEL = "tiny"
SIZE = 16


def png(color: tuple[int, int, int], side: int = 24) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), color).save(buf, format="PNG")
    return buf.getvalue()


def data_url(raw: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(raw).decode()}"


def forged_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels: how a decompression bomb looks
    to the server before it decodes anything."""
    raw = bytearray(png((0, 0, 0), side=1))
    ihdr = 8 + 8  # past the signature and the IHDR chunk's length and type
    raw[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    raw[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(raw[ihdr - 4 : ihdr + 13])))
    return bytes(raw)


RED, BLUE = data_url(png((255, 0, 0))), data_url(png((0, 0, 255)))


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def request(**overrides) -> dict:
    body = {
        "model": MODEL,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "describe the changes"},
                    image_part(RED),
                    image_part(BLUE),
                ],
            }
        ],
        "max_tokens": 8,
    }
    body.update(overrides)
    return body


def parse(body, num_images: int = 2, fetch=None):
    return parse_chat_request(body, model_name=MODEL, num_images=num_images, image_size=SIZE, fetch=fetch)


def test_two_image_request_parses_to_turns_and_ordered_images():
    chat = parse(request())
    assert chat.conversation == [Turn("user", "describe the changes")]
    assert chat.images.shape == (2, 3, SIZE, SIZE)
    assert chat.images.dtype == torch.float32
    assert 0.0 <= chat.images.min() and chat.images.max() <= 1.0
    # before (red) then after (blue), as they appeared
    assert chat.images[0, 0].mean() > 0.9 and chat.images[0, 2].mean() < 0.1
    assert chat.images[1, 2].mean() > 0.9 and chat.images[1, 0].mean() < 0.1
    assert (chat.model, chat.max_tokens, chat.temperature, chat.top_p) == (MODEL, 8, 0.0, 1.0)


def test_multi_turn_history_system_ignored_and_images_taken_across_messages():
    body = request(
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": [{"type": "text", "text": "what changed?"}, image_part(RED)]},
            {"role": "user", "content": [image_part(BLUE)]},
            {"role": "assistant", "content": [{"type": "text", "text": "a building was built"}]},
            {"role": "user", "content": "how many?"},
        ],
        temperature=0.7,
        top_p=0.9,
    )
    chat = parse(body)
    assert chat.conversation == [
        Turn("user", "what changed?"),
        Turn("assistant", "a building was built"),
        Turn("user", "how many?"),
    ]
    assert chat.images[0, 0].mean() > 0.9 and chat.images[1, 2].mean() > 0.9
    assert (chat.temperature, chat.top_p) == (0.7, 0.9)


def test_defaults_and_max_completion_tokens_alias():
    body = request()
    del body["max_tokens"]
    assert parse(body).max_tokens == openai_requests.DEFAULT_MAX_TOKENS == 64
    assert parse(request(max_tokens=None, max_completion_tokens=5)).max_tokens == 5


def test_single_image_model():
    chat = parse(
        request(messages=[{"role": "user", "content": [image_part(RED), {"type": "text", "text": "x"}]}]), 1
    )
    assert chat.images.shape == (1, 3, SIZE, SIZE)


def content(*parts) -> dict:
    """A request whose single user message holds `parts`."""
    return request(messages=[{"role": "user", "content": list(parts)}])


TEXT = {"type": "text", "text": "describe"}
URL1 = "messages[0].content[1].image_url.url"  # where `first_image` puts its url


def first_image(url: str) -> dict:
    return content(TEXT, image_part(url), image_part(BLUE))


def bad(id, body, status, param, words):
    return pytest.param(body, status, param, words, id=id)


BAD_REQUESTS = [
    bad("not-an-object", [1, 2], 400, None, "JSON object"),
    bad("no-messages", request(messages=None), 400, "messages", "'messages' is required"),
    bad("empty-messages", request(messages=[]), 400, "messages", "non-empty"),
    bad("no-model", request(model=None), 400, "model", "'model' is required"),
    bad("wrong-model", request(model="gpt-4o"), 404, "model", "'gpt-4o' does not exist"),
    bad("max-tokens-zero", request(max_tokens=0), 400, "max_tokens", "between 1 and 512"),
    bad("max-tokens-too-big", request(max_tokens=513), 400, "max_tokens", "between 1 and 512"),
    bad("max-tokens-string", request(max_tokens="8"), 400, "max_tokens", "must be an integer"),
    bad("max-tokens-bool", request(max_tokens=True), 400, "max_tokens", "must be an integer"),
    bad("max-tokens-float", request(max_tokens=1.5), 400, "max_tokens", "must be an integer"),
    bad("both-max-tokens", request(max_tokens=8, max_completion_tokens=9), 400, "max_tokens", "not both"),
    bad("temperature-negative", request(temperature=-0.1), 400, "temperature", "between 0 and 2"),
    bad("temperature-too-hot", request(temperature=2.5), 400, "temperature", "between 0 and 2"),
    bad("temperature-string", request(temperature="hot"), 400, "temperature", "must be a number"),
    bad("top-p-zero", request(top_p=0), 400, "top_p", "greater than 0"),
    bad("top-p-above-one", request(top_p=1.5), 400, "top_p", "at most 1"),
    bad("n-greedy", request(n=2), 400, "n", "needs sampling"),
    bad("n-zero", request(n=0, temperature=1), 400, "n", "between 1 and 8"),
    bad("n-too-many", request(n=9, temperature=1), 400, "n", "between 1 and 8"),
    bad("stream-string", request(stream="yes"), 400, "stream", "must be a boolean"),
    bad("stream-options-without-stream", request(stream_options={"include_usage": True}), 400, "stream_options",
        "only allowed with 'stream': true"),
    bad("stream-options-unknown", request(stream=True, stream_options={"x": 1}), 400, "stream_options",
        "only 'include_usage'"),
    bad("tools", request(tools=[{"type": "function"}]), 400, "tools", "not supported"),
    bad("stop-number", request(stop=3), 400, "stop", "non-empty string or an array"),
    bad("stop-empty-string", request(stop=[""]), 400, "stop", "non-empty string or an array"),
    bad("stop-too-many", request(stop=["a", "b", "c", "d", "e"]), 400, "stop", "at most 4"),
    bad("stop-too-long", request(stop=["x" * 65]), 400, "stop", "at most 64 characters"),
    bad("unknown-field", request(temprature=0.5), 400, "temprature", "unrecognized request argument"),
    bad("message-not-object", request(messages=["hi"]), 400, "messages[0]", "must be an object"),
    bad("tool-role", request(messages=[{"role": "tool", "content": "x"}]), 400, "messages[0].role", "'tool'"),
    bad("null-content", request(messages=[{"role": "user", "content": None}]), 400, "messages[0].content",
        "string or an array"),
    bad("unknown-part", content(TEXT, {"type": "input_audio"}), 400, "messages[0].content[1]",
        "'text' or 'image_url'"),
    bad("text-not-string", content({"type": "text", "text": 3}), 400, "messages[0].content[0].text",
        "must be a string"),
    bad("image-url-string", content(TEXT, {"type": "image_url", "image_url": RED}, image_part(BLUE)), 400,
        "messages[0].content[1].image_url", "string 'url'"),
    bad("remote-url", first_image("https://example.com/a.png"), 400, URL1, "remote image URLs are not fetched"),
    bad("file-url", first_image("file:///etc/passwd"), 400, URL1, "must be a data URL"),
    bad("text-data-url", first_image(data_url(b"hi", "text/plain")), 400, URL1, "base64 image data URL"),
    bad("no-base64-flag", first_image("data:image/png,abcd"), 400, URL1, "base64 image data URL"),
    bad("broken-base64", first_image("data:image/png;base64,@@not*base64"), 400, URL1, "not valid base64"),
    bad("not-an-image", first_image(data_url(b"hello, not a png")), 400, URL1, "not an image"),
    bad("bomb", first_image(data_url(forged_png(20000, 20000))), 400, URL1, "decompression bomb"),
    bad("too-many-pixels", first_image(data_url(forged_png(9000, 9000))), 400, URL1, "over the limit"),
    bad("one-image", content(TEXT, image_part(RED)), 400, "messages",
        "reads 2 images per conversation (before, after), but the messages hold 1 image"),
    bad("three-images", content(TEXT, image_part(RED), image_part(BLUE), image_part(RED)), 400, "messages",
        "hold 3 images"),
    bad("image-from-assistant", request(messages=[
        {"role": "user", "content": [TEXT, image_part(RED)]},
        {"role": "assistant", "content": [image_part(BLUE)]},
        {"role": "user", "content": "and now?"},
    ]), 400, "messages[1].content[0]", "only user messages"),
    bad("ends-with-assistant", request(messages=[
        {"role": "user", "content": [TEXT, image_part(RED), image_part(BLUE)]},
        {"role": "assistant", "content": "done"},
    ]), 400, "messages[1]", "last message must be from the user"),
    bad("starts-with-assistant", request(messages=[
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": [TEXT, image_part(RED), image_part(BLUE)]},
    ]), 400, "messages", "start with a user message"),
]


@pytest.mark.parametrize(("body", "status", "param", "words"), BAD_REQUESTS)
def test_bad_requests_are_4xx_naming_the_problem(body, status, param, words):
    with pytest.raises(APIError) as info:
        parse(copy.deepcopy(body))
    err = info.value
    assert (err.status, err.param) == (status, param)
    assert words in err.message
    shape = err.to_dict()
    assert set(shape) == {"error"}
    assert shape["error"] == {"message": err.message, "type": "invalid_request_error", "param": param,
                              "code": err.code}
    json.dumps(shape)


def test_codes_of_known_openai_errors():
    with pytest.raises(APIError) as info:
        parse(request(model="other"))
    assert info.value.to_dict()["error"]["code"] == "model_not_found"
    with pytest.raises(APIError) as info:
        parse(first_image("http://169.254.169.254/latest"))
    assert info.value.code == "remote_image_url"


def test_oversized_image_is_413(monkeypatch):
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 64)
    big = data_url(png((1, 2, 3), side=64) + b"\0" * 200)
    with pytest.raises(APIError) as info:
        parse(content(TEXT, image_part(big), image_part(RED)))
    assert info.value.status == 413 and "larger than" in info.value.message


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b""])
def test_malformed_json_is_400(raw):
    with pytest.raises(APIError) as info:
        load_json(raw)
    assert info.value.status == 400 and "not valid JSON" in info.value.message


def test_server_errors_are_typed_as_such():
    assert APIError(500, "boom").to_dict()["error"]["type"] == "server_error"


def test_stream_n_and_stop_are_parsed():
    chat = parse(request(stream=True, stream_options={"include_usage": True}, n=3, temperature=0.8, stop="\n"))
    assert (chat.stream, chat.include_usage, chat.n, chat.stop) == (True, True, 3, ("\n",))
    assert parse(request(stop=["a", "b"])).stop == ("a", "b")
    plain = parse(request())
    assert (plain.stream, plain.include_usage, plain.n, plain.stop) == (False, False, 1, ())


def test_beams_and_repetition_penalty_default_to_the_model_and_are_checked():
    body = request()
    served = parse_chat_request(body, model_name=MODEL, num_images=2, image_size=SIZE, repetition_penalty=1.5)
    assert (served.repetition_penalty, served.num_beams) == (1.5, 1)  # the recipe's eval.repetition_penalty
    beams = parse(request(num_beams=5, n=2, repetition_penalty=1.2))
    assert (beams.num_beams, beams.n, beams.repetition_penalty) == (5, 2, 1.2)
    assert beams.sampling_key() != parse(request(n=1, repetition_penalty=1.2)).sampling_key()
    for body, words in ((request(num_beams=2, stream=True), "no stream"), (request(num_beams=2, temperature=0.7),
                        "temperature 0"), (request(num_beams=2, n=3), "'n' at most"),
                        (request(repetition_penalty=0), "greater than 0"), (request(num_beams=0), "between 1")):
        with pytest.raises(APIError, match=words):
            parse(body)


def test_sampling_keys_group_compatible_requests():
    greedy = parse(request()).sampling_key()
    assert parse(request(top_p=0.5, max_tokens=3)).sampling_key() == greedy  # greedy ignores top_p
    assert parse(request(temperature=0.7)).sampling_key() != greedy
    assert parse(request(stop=["x"])).sampling_key() != greedy
    assert parse(request(temperature=0.7, n=2)).sampling_key() != parse(request(temperature=0.7)).sampling_key()


def test_requested_model_routes_or_404s():
    assert requested_model(request(model="b"), ["a", "b"]) == "b"
    with pytest.raises(APIError) as info:
        requested_model(request(model="c"), ["a", "b"])
    assert info.value.status == 404 and "serves 'a', 'b'" in info.value.message


def test_remote_urls_go_to_the_fetcher():
    seen = []

    def fetch(url: str, where: str) -> bytes:
        seen.append((url, where))
        return png((0, 255, 0))

    chat = parse(first_image("https://images.example/a.png"), fetch=fetch)
    assert seen == [("https://images.example/a.png", URL1)]
    assert chat.images[0, 1].mean() > 0.9  # the fetched green image is the before image


def test_response_shapes():
    out = chat_completion(model=MODEL, choices=[("a road", "stop"), ("a river", "length")], prompt_tokens=3,
                          completion_tokens=2)
    assert out["id"].startswith("chatcmpl-") and out["object"] == "chat.completion"
    assert isinstance(out["created"], int) and out["model"] == MODEL
    assert out["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "a road"}, "logprobs": None, "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": "a river"}, "logprobs": None,
         "finish_reason": "length"},
    ]
    assert out["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    listed = model_list([(MODEL, 123), ("other", 124)])
    assert listed["object"] == "list" and [m["id"] for m in listed["data"]] == [MODEL, "other"]


def test_stream_chunk_shapes():
    chunk = chat_chunk(id="chatcmpl-1", created=5, model=MODEL, index=1, delta={"content": "a"})
    assert chunk == {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 5, "model": MODEL,
                     "choices": [{"index": 1, "delta": {"content": "a"}, "logprobs": None, "finish_reason": None}]}
    last = usage_chunk(id="chatcmpl-1", created=5, model=MODEL, prompt_tokens=2, completion_tokens=3)
    assert last["choices"] == [] and last["usage"]["total_tokens"] == 5
    assert sse({"a": 1}) == 'data: {"a": 1}\n\n' and SSE_DONE == "data: [DONE]\n\n"
