"""OpenAI chat-completions wire format: request parsing/validation and response shapes.

Pure Python (plus the kernel's image loader): no Ray, no FastAPI, so every rule here is unit-tested
without starting a server. Anything wrong with a request raises `APIError`, which the app renders as
OpenAI's error object, so the official `openai` client raises its usual `BadRequestError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from rsforge.core.data.images import ImageError, load_image
from rsforge.core.data.schema import Turn

MAX_TOKENS_LIMIT = 512
DEFAULT_MAX_TOKENS = 64
MAX_CHOICES = 8  # `n`: each choice is a full decoding row, so many would crowd out other requests' batches
MAX_STOP_STRINGS = 4  # OpenAI's own limit
MAX_STOP_LENGTH = 64
# Greedy by default (OpenAI defaults to 1.0): RS answers (yes/no, counts, grids) should be repeatable.
DEFAULT_TEMPERATURE = 0.0
MAX_IMAGE_BYTES = 20 * 1024 * 1024

# Ignored on purpose: they only tune sampling statistics or bookkeeping, never the meaning of the answer.
_IGNORED_FIELDS = {
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "user",
    "metadata",
    "store",
    "logit_bias",
    "service_tier",
    "parallel_tool_calls",
}
# Refused when set: silently dropping them would return something other than what was asked for.
_UNSUPPORTED_FIELDS = {
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "logprobs",
    "top_logprobs",
    "response_format",
    "modalities",
    "audio",
    "prediction",
    "reasoning_effort",
}
_KNOWN_FIELDS = (
    {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stream",
     "stream_options", "stop"}
    | _IGNORED_FIELDS
    | _UNSUPPORTED_FIELDS
)


class APIError(Exception):
    """A request the server will not run; `status` is the HTTP status, `param` the offending field."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def to_dict(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class ChatRequest:
    """A validated request: `images` is (T, 3, S, S) in [0, 1], ordered as they appeared (before, after);
    `n` answers are wanted, streamed as server-sent events when `stream`."""

    model: str
    conversation: list[Turn]
    images: torch.Tensor
    max_tokens: int
    temperature: float
    top_p: float
    n: int = 1
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False

    def sampling_key(self) -> tuple:
        """Requests with equal keys can share one batched `generate` call. Greedy decoding ignores
        top_p, so all greedy requests share a key."""
        top_p = 1.0 if self.temperature == 0 else self.top_p
        return (self.temperature, top_p, self.stop, self.n)


# `fetch(url, where) -> bytes` reads a remote image (see `remote.py`); None refuses remote URLs.
Fetch = Callable[[str, str], bytes]


def load_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON: {exc}") from None


def requested_model(body: Any, served: list[str]) -> str:
    """The served model a request body names (400 when it names none, 404 when it names another)."""
    if not isinstance(body, dict):
        raise APIError(400, f"the request body must be a JSON object, got {_json_type(body)}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise APIError(400, "'model' is required and must be a non-empty string", param="model")
    if model not in served:
        names = ", ".join(f"'{m}'" for m in served)
        raise APIError(
            404,
            f"the model '{model}' does not exist; this server serves {names}",
            param="model",
            code="model_not_found",
        )
    return model


def parse_chat_request(
    body: Any,
    *,
    model_name: str,
    num_images: int,
    image_size: int,
    interpolation: str = "bilinear",
    fetch: Fetch | None = None,
) -> ChatRequest:
    """Validate an OpenAI chat-completion request body for the served model `model_name`, which reads
    `num_images` images of `image_size` pixels per conversation. Remote image URLs are read with
    `fetch` (None: refused)."""
    if not isinstance(body, dict):
        raise APIError(400, f"the request body must be a JSON object, got {_json_type(body)}")
    for key in body:
        if key not in _KNOWN_FIELDS:
            raise APIError(400, f"unrecognized request argument: '{key}'", param=key)
    for key in sorted(_UNSUPPORTED_FIELDS & body.keys()):
        if body[key] not in (None, False):
            raise APIError(400, f"'{key}' is not supported by this server", param=key)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise APIError(400, f"'stream' must be a boolean, got {_short(stream)}", param="stream")
    include_usage = _stream_options(body.get("stream_options"), bool(stream))
    requested_model(body, [model_name])
    model = body["model"]
    max_tokens = _max_tokens(body)
    temperature = _number(body, "temperature", DEFAULT_TEMPERATURE)
    if not 0.0 <= temperature <= 2.0:
        raise APIError(400, f"'temperature' must be between 0 and 2, got {temperature}", param="temperature")
    top_p = _number(body, "top_p", 1.0)
    if not 0.0 < top_p <= 1.0:
        raise APIError(400, f"'top_p' must be greater than 0 and at most 1, got {top_p}", param="top_p")
    n = _number(body, "n", 1, integer=True)
    if not 1 <= n <= MAX_CHOICES:
        raise APIError(400, f"'n' must be between 1 and {MAX_CHOICES}, got {n}", param="n")
    if n > 1 and temperature == 0:
        raise APIError(
            400,
            f"'n' = {n} needs sampling: set 'temperature' above 0 (greedy decoding would give {n} identical answers)",
            param="n",
        )
    stop = _stop(body.get("stop"))

    conversation, image_bytes = _parse_messages(body.get("messages"), fetch)
    if len(image_bytes) != num_images:
        order = " (before, after)" if num_images == 2 else ""
        raise APIError(
            400,
            f"this model reads {_images(num_images)} per conversation{order}, "
            f"but the messages hold {_images(len(image_bytes))}",
            param="messages",
        )
    images = [_decode_image(data, image_size, interpolation, param) for param, data in image_bytes]
    return ChatRequest(
        model, conversation, torch.stack(images), max_tokens, temperature, top_p,
        n=n, stop=stop, stream=bool(stream), include_usage=include_usage,
    )


def _stream_options(options: Any, stream: bool) -> bool:
    """-> whether to end the stream with a usage chunk (`stream_options.include_usage`)."""
    if options is None:
        return False
    if not stream:
        raise APIError(400, "'stream_options' is only allowed with 'stream': true", param="stream_options")
    if not isinstance(options, dict) or set(options) - {"include_usage"}:
        raise APIError(400, "'stream_options' must be an object with only 'include_usage'", param="stream_options")
    include = options.get("include_usage", False)
    if not isinstance(include, bool):
        raise APIError(400, "'stream_options.include_usage' must be a boolean", param="stream_options")
    return include


def _stop(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    strings = [stop] if isinstance(stop, str) else stop
    if not isinstance(strings, list) or not all(isinstance(s, str) and s for s in strings):
        raise APIError(400, f"'stop' must be a non-empty string or an array of them, got {_short(stop)}", param="stop")
    if len(strings) > MAX_STOP_STRINGS:
        raise APIError(400, f"'stop' may hold at most {MAX_STOP_STRINGS} strings, got {len(strings)}", param="stop")
    if any(len(s) > MAX_STOP_LENGTH for s in strings):
        raise APIError(400, f"each 'stop' string may be at most {MAX_STOP_LENGTH} characters long", param="stop")
    return tuple(strings)


def _parse_messages(messages: Any, fetch: Fetch | None = None) -> tuple[list[Turn], list[tuple[str, bytes]]]:
    """-> (turns, [(param path, raw image bytes)]) with images in order of appearance."""
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "'messages' is required and must be a non-empty array", param="messages")
    turns: list[Turn] = []
    images: list[tuple[str, bytes]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise APIError(400, f"{where} must be an object, got {_json_type(message)}", param=where)
        role = message.get("role")
        # System/developer prompts are accepted for client compatibility but ignored: the model was
        # trained on user/assistant turns only, so an instruction it never saw would not steer it.
        if role in ("system", "developer"):
            continue
        if role not in ("user", "assistant"):
            raise APIError(
                400,
                f"{where}.role must be 'system', 'user' or 'assistant', got {role!r}",
                param=f"{where}.role",
            )
        text = _parse_content(
            message.get("content"), f"{where}.content", images, allow_images=role == "user", fetch=fetch
        )
        if turns and turns[-1].role == role:
            # Consecutive messages of one role (e.g. text then images) form one turn, so the model
            # always sees alternating user/assistant turns as in training.
            text = f"{turns[-1].text}\n{text}" if turns[-1].text and text else turns[-1].text or text
            turns[-1] = Turn(role, text)
        else:
            turns.append(Turn(role, text))
    if messages[-1].get("role") != "user":
        raise APIError(
            400,
            "the last message must be from the user (the model answers it)",
            param=f"messages[{len(messages) - 1}]",
        )
    if turns[0].role != "user":
        raise APIError(400, "the conversation must start with a user message", param="messages")
    return turns, images


def _parse_content(
    content: Any, where: str, images: list[tuple[str, bytes]], *, allow_images: bool, fetch: Fetch | None = None
) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise APIError(
            400,
            f"{where} must be a string or an array of content parts, got {_json_type(content)}",
            param=where,
        )
    texts: list[str] = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise APIError(400, f"{at}.text must be a string", param=f"{at}.text")
            texts.append(part["text"])
        elif kind == "image_url":
            if not allow_images:
                raise APIError(400, f"{at}: only user messages may carry images", param=at)
            images.append((f"{at}.image_url", image_url_bytes(part.get("image_url"), f"{at}.image_url", fetch)))
        else:
            raise APIError(
                400, f"{at} must be an object with 'type' 'text' or 'image_url', got {_short(part)}", param=at
            )
    return "\n".join(t for t in texts if t)


def image_url_bytes(image_url: Any, where: str, fetch: Fetch | None = None) -> bytes:
    """The image bytes of an `image_url` object: a base64 data URL, or a remote URL read by `fetch`."""
    if not isinstance(image_url, dict) or not isinstance(image_url.get("url"), str):
        raise APIError(400, f"{where} must be an object with a string 'url'", param=where)
    return data_url_bytes(image_url["url"], f"{where}.url", fetch)


def data_url_bytes(url: str, where: str, fetch: Fetch | None = None) -> bytes:
    """The bytes of a base64 image data URL found at `where`; http(s) URLs go to `fetch`."""
    if url.startswith(("http://", "https://")):
        if fetch is not None:
            return fetch(url, where)
        # No server-side fetching unless allowed: it would let any client make this server request any host.
        raise APIError(
            400,
            f"{where}: remote image URLs are not fetched by this server (start it with --allow-image-host "
            "HOST to allow a host); send the image inline as a data URL ('data:image/png;base64,...')",
            param=where,
            code="remote_image_url",
        )
    header, comma, payload = url.partition(",")
    if not url.startswith("data:") or not comma:
        raise APIError(
            400,
            f"{where} must be a data URL 'data:image/<format>;base64,<data>', got {_short(url)}",
            param=where,
        )
    media_type, *params = header[len("data:") :].split(";")
    if not media_type.startswith("image/") or "base64" not in params:
        raise APIError(
            400,
            f"{where} must be a base64 image data URL 'data:image/<format>;base64,...', got '{header}'",
            param=where,
        )
    if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise APIError(
            413,
            f"{where}: the image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB",
            param=where,
        )
    try:
        # Whitespace is dropped first: some encoders wrap base64 at 76 columns.
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise APIError(
            400, f"{where}: the data URL is not valid base64 ({exc})", param=where
        ) from None


def _decode_image(data: bytes, image_size: int, interpolation: str, where: str) -> torch.Tensor:
    try:
        return load_image(data, image_size, interpolation=interpolation)
    except ImageError as exc:
        raise APIError(400, f"{where}.url: {exc}", param=f"{where}.url") from None


def _max_tokens(body: dict[str, Any]) -> int:
    # `max_completion_tokens` is OpenAI's newer name for `max_tokens`; accept either, not both.
    given = [k for k in ("max_tokens", "max_completion_tokens") if body.get(k) is not None]
    if len(given) == 2 and body["max_tokens"] != body["max_completion_tokens"]:
        raise APIError(400, "give 'max_tokens' or 'max_completion_tokens', not both", param="max_tokens")
    key = given[0] if given else "max_tokens"
    value = _number(body, key, DEFAULT_MAX_TOKENS, integer=True)
    if not 1 <= value <= MAX_TOKENS_LIMIT:
        raise APIError(400, f"'{key}' must be between 1 and {MAX_TOKENS_LIMIT}, got {value}", param=key)
    return value


def _number(body: dict[str, Any], key: str, default: float, *, integer: bool = False) -> Any:
    value = body.get(key)
    if value is None:
        return default
    # bool is an int in Python but `true` is not a number in JSON.
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok:
        kind = "an integer" if integer else "a number"
        raise APIError(400, f"'{key}' must be {kind}, got {_short(value)}", param=key)
    return value


def _images(n: int) -> str:
    return f"{n} image" if n == 1 else f"{n} images"


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_completion(
    *, model: str, choices: list[tuple[str, str]], prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """A `chat.completion` object; `choices` are (answer, finish_reason) in order."""
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": answer},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
            for i, (answer, finish_reason) in enumerate(choices)
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chat_chunk(
    *, id: str, created: int, model: str, index: int, delta: dict[str, str], finish_reason: str | None = None
) -> dict[str, Any]:
    """One `chat.completion.chunk` of a streamed completion: a piece of choice `index`."""
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def usage_chunk(*, id: str, created: int, model: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """The last chunk when `stream_options.include_usage` is set: no choices, the usage of the whole call."""
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def sse(data: dict[str, Any] | str) -> str:
    """One server-sent event as OpenAI streams them: `data: <json>` and a blank line."""
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


SSE_DONE = sse("[DONE]")


def model_list(models: list[tuple[str, int]]) -> dict[str, Any]:
    """The `/v1/models` list of (name, created)."""
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "rsforge"} for name, created in models
        ],
    }
