"""End to end: `rsforge.serve` on the shared local Ray, called over HTTP with the official `openai` client."""

import base64
import io
import json
import socket
import urllib.error
import urllib.request

import openai
import pytest
from PIL import Image

pytestmark = pytest.mark.ray


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def data_url(color: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (48, 48), color).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def user_message(before: str, after: str) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "describe the changes"},
                {"type": "image_url", "image_url": {"url": before}},
                {"type": "image_url", "image_url": {"url": after}},
            ],
        }
    ]


VALID = user_message(data_url((200, 30, 30)), data_url((30, 30, 200)))


@pytest.fixture(scope="module")
def server(ray_session, tiny_model_dir):
    from ray import serve

    from rsforge.serve.app import run

    app = run(tiny_model_dir, port=free_port(), blocking=False)
    yield app
    serve.shutdown()


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    # No retries: a failure should show at once, not after the client's backoff.
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60)


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_models_lists_the_served_model(client, server):
    assert [m.id for m in client.models.list().data] == [server.info["model"]]
    assert server.info["num_images"] == 2


def test_chat_completion_with_two_images(client, server):
    reply = client.chat.completions.create(model=server.info["model"], messages=VALID, max_tokens=8)
    assert reply.id.startswith("chatcmpl-") and reply.object == "chat.completion"
    assert reply.model == server.info["model"]
    (choice,) = reply.choices
    assert isinstance(choice.message.content, str) and choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_bad_request_is_an_openai_400_and_the_replica_keeps_serving(client, server):
    broken = user_message("data:image/png;base64,@@not*base64", data_url((0, 0, 0)))
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=server.info["model"], messages=broken, max_tokens=8)
    assert info.value.status_code == 400
    error = info.value.response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages[0].content[1].image_url.url" and "base64" in error["message"]

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="not-this-one", messages=VALID, max_tokens=8)
    request = urllib.request.Request(f"{server.url}/chat/completions", data=b"{oops", method="POST")
    with pytest.raises(urllib.error.HTTPError) as raw:
        urllib.request.urlopen(request, timeout=30)
    assert raw.value.code == 400 and "not valid JSON" in json.loads(raw.value.read())["error"]["message"]

    reply = client.chat.completions.create(model=server.info["model"], messages=VALID, max_tokens=4)
    assert isinstance(reply.choices[0].message.content, str)


def test_healthz(server):
    status, body = get(server.url.removesuffix("/v1") + "/healthz")
    assert status == 200 and body["status"] == "ok" and body["model"] == server.info["model"]
