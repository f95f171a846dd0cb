"""End to end: `rsforge.serve` with two models on the shared local Ray, called over HTTP with the
official `openai` client (plain, streamed, several choices), the change-mask API and /metrics."""

import base64
import io
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
from PIL import Image

from rsforge.serve.client import image_message
from rsforge.serve.prometheus import parse_prometheus

from .conftest import free_port

pytestmark = pytest.mark.ray

BEFORE, AFTER = Image.new("RGB", (48, 48), (200, 30, 30)), Image.new("RGB", (48, 48), (30, 30, 200))
VALID = [image_message("describe the changes", BEFORE, AFTER)]
README_MODEL = "demo-change-captioner"


@pytest.fixture(scope="module")
def server(ray_session, tiny_model_dir, tiny_single_image_model_dir):
    from ray import serve

    from rsforge.serve.app import run
    from rsforge.serve.settings import ServeConfig

    config = ServeConfig(
        # The pair model takes the README's name, so the README's client code runs against it unchanged.
        models=[{"path": str(tiny_model_dir), "name": README_MODEL},
                {"path": str(tiny_single_image_model_dir), "name": "single"}],
        port=free_port(),
        max_batch_size=8,
    )
    app = run(config, blocking=False)
    yield app
    serve.shutdown()


@pytest.fixture(scope="module")
def pair_model(server) -> str:
    return server.models[0]["model"]


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    # No retries: a failure should show at once, not after the client's backoff.
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60)


def call(url: str, body: dict | None = None) -> tuple[int, dict | str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw, kind = response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, raw, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    return status, json.loads(raw) if "json" in kind else raw.decode()


def root(server) -> str:
    return server.url.removesuffix("/v1")


def test_models_lists_both_served_models(client, server, pair_model):
    assert [m.id for m in client.models.list().data] == [pair_model, "single"]
    assert [(m["num_images"], m["masks"]) for m in server.models] == [(2, True), (1, False)]


def test_chat_completion_with_two_images(client, pair_model):
    reply = client.chat.completions.create(model=pair_model, messages=VALID, max_tokens=8)
    assert reply.id.startswith("chatcmpl-") and reply.object == "chat.completion"
    assert reply.model == pair_model
    (choice,) = reply.choices
    assert isinstance(choice.message.content, str) and choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens > 0 and 0 < reply.usage.completion_tokens <= 8
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_streamed_completion_matches_the_plain_one(client, pair_model):
    plain = client.chat.completions.create(model=pair_model, messages=VALID, max_tokens=12)
    stream = client.chat.completions.create(
        model=pair_model, messages=VALID, max_tokens=12, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    # Greedy decoding: the pieces streamed token by token add up to the plain answer.
    assert "".join(pieces) == plain.choices[0].message.content
    assert len([p for p in pieces if p]) > 1 or len(plain.choices[0].message.content.split()) <= 1
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [plain.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == plain.usage.total_tokens


def test_routing_by_model_multi_turn_n_and_stop(client):
    history = [
        image_message("what is in the image?", BEFORE),
        {"role": "assistant", "content": "a building"},
        {"role": "user", "content": "and now?"},
    ]
    reply = client.chat.completions.create(model="single", messages=history, max_tokens=6, n=3, temperature=1.0,
                                           top_p=0.9, stop=["zzz"])
    assert reply.model == "single" and [c.index for c in reply.choices] == [0, 1, 2]
    assert all("zzz" not in c.message.content for c in reply.choices)
    # The single-image model refuses a pair: routing reached the right model.
    with pytest.raises(openai.BadRequestError, match="reads 1 image"):
        client.chat.completions.create(model="single", messages=VALID, max_tokens=4)


def test_stop_string_cuts_the_answer(client, pair_model):
    full = client.chat.completions.create(model=pair_model, messages=VALID, max_tokens=12).choices[0].message.content
    assert len(full) >= 3, f"the tiny model's answer {full!r} is too short to cut"
    stop = full[1:3]  # inside the answer, so decoding must stop there and cut the text before it
    reply = client.chat.completions.create(model=pair_model, messages=VALID, max_tokens=12, stop=[stop, "zzz"])
    assert reply.choices[0].message.content == full[: full.index(stop)].strip()
    assert reply.choices[0].finish_reason == "stop"


def test_unknown_model_is_an_openai_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="not-this-one", messages=VALID, max_tokens=8)
    error = info.value.response.json()["error"]
    assert error["code"] == "model_not_found" and "'single'" in error["message"]


def test_change_detect_png_and_geojson(server, pair_model):
    from rsforge.serve.client import data_url

    body = {"model": pair_model, "before": data_url(BEFORE), "after": data_url(AFTER)}
    status, out = call(root(server) + "/v1/change/detect", body)
    assert status == 200, out
    # Native resolution, as `rsforge detect`: a 48 x 48 upload is not scored as the model's 32 x 32 input.
    assert server.models[0]["image_size"] < 48
    mask = Image.open(io.BytesIO(base64.b64decode(out["mask_png"].split(",", 1)[1])))
    assert mask.size == BEFORE.size == (out["width"], out["height"])
    changed = sum(1 for v in mask.getdata() if v)
    stats = out["stats"]
    assert stats["changed_pixels"] == changed and stats["changed_fraction"] == changed / 48**2
    assert (stats["regions"] > 0) == (changed > 0)

    status, geo = call(root(server) + "/v1/change/detect", {**body, "format": "geojson"})
    assert status == 200 and geo["geojson"]["type"] == "FeatureCollection"
    assert geo["stats"] == stats and (len(geo["geojson"]["features"]) > 0) == (changed > 0)

    # `model` may be left out when one model predicts masks; a model without a mask head is a 400.
    assert call(root(server) + "/v1/change/detect", {k: v for k, v in body.items() if k != "model"})[0] == 200
    status, error = call(root(server) + "/v1/change/detect", {**body, "model": "single"})
    assert status == 400 and "no mask head" in error["error"]["message"]


def test_healthz_and_metrics(server, client, pair_model):
    status, body = call(root(server) + "/healthz")
    assert status == 200 and body == {"status": "ok", "models": [pair_model, "single"]}
    client.chat.completions.create(model=pair_model, messages=VALID, max_tokens=2)
    assert call(server.url + "/chat/completions", {"model": "nope", "messages": []})[0] == 404
    status, text = call(root(server) + "/metrics")
    assert status == 200 and "# TYPE rsforge_request_duration_seconds histogram" in text
    values = parse_prometheus(text)
    assert values['rsforge_requests_total{route="/v1/chat/completions",status="200"}'] >= 1
    assert values['rsforge_requests_total{route="/v1/chat/completions",status="404"}'] >= 1
    assert values['rsforge_request_latency_seconds{route="/v1/chat/completions",quantile="0.99"}'] > 0
    assert values["rsforge_batch_size_count"] >= 1


def test_the_readme_client_code_runs_as_written(server, tmp_path, monkeypatch, capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "from openai import OpenAI" in b]
    assert f'model="{README_MODEL}"' in code and "stream=True" in code
    BEFORE.save(tmp_path / "before.png")
    AFTER.save(tmp_path / "after.png")
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace("http://127.0.0.1:8000/v1", server.url), "README.md", "exec"), {})
    plain, streamed = capsys.readouterr().out.splitlines()
    assert plain and streamed == plain  # greedy by default: the streamed answer is the plain one
