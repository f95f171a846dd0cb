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
from dataclasses import dataclass
from typing import Any

import torch

from rsforge.core.data.images import ImageError, load_image
from rsforge.core.data.schema import Turn

MAX_TOKENS_LIMIT = 512
DEFAULT_MAX_TOKENS = 64
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
    "stream_options",
}
# Refused when set: silently dropping them would return something other than what was asked for.
_UNSUPPORTED_FIELDS = {
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "logprobs",
    "top_logprobs",
    "stop",
    "response_format",
    "modalities",
    "audio",
    "prediction",
    "reasoning_effort",
}
_KNOWN_FIELDS = (
    {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stream"}
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
    """A validated request: `images` is (T, 3, S, S) in [0, 1], ordered as they appeared (before, after)."""

    model: str
    conversation: list[Turn]
    images: torch.Tensor
    max_tokens: int
    temperature: float
    top_p: float


def load_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON: {exc}") from None


def parse_chat_request(
    body: Any, *, model_name: str, num_images: int, image_size: int, interpolation: str = "bilinear"
) -> ChatRequest:
    """Validate an OpenAI chat-completion request body for the served model `model_name`, which reads
    `num_images` images of `image_size` pixels per conversation."""
    if not isinstance(body, dict):
        raise APIError(400, f"the request body must be a JSON object, got {_json_type(body)}")
    for key in body:
        if key not in _KNOWN_FIELDS:
            raise APIError(400, f"unrecognized request argument: '{key}'", param=key)
    for key in sorted(_UNSUPPORTED_FIELDS & body.keys()):
        if body[key] not in (None, False):
            raise APIError(400, f"'{key}' is not supported by this server", param=key)
    if body.get("stream") not in (None, False):
        raise APIError(400, "streaming is not supported yet; send 'stream': false", param="stream")
    n = _number(body, "n", 1, integer=True)
    if n != 1:
        raise APIError(400, f"'n' must be 1 (one choice per request), got {n}", param="n")

    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise APIError(400, "'model' is required and must be a non-empty string", param="model")
    if model != model_name:
        raise APIError(
            404,
            f"the model '{model}' does not exist; this server serves '{model_name}'",
            param="model",
            code="model_not_found",
        )
    max_tokens = _max_tokens(body)
    temperature = _number(body, "temperature", DEFAULT_TEMPERATURE)
    if not 0.0 <= temperature <= 2.0:
        raise APIError(400, f"'temperature' must be between 0 and 2, got {temperature}", param="temperature")
    top_p = _number(body, "top_p", 1.0)
    if not 0.0 < top_p <= 1.0:
        raise APIError(400, f"'top_p' must be greater than 0 and at most 1, got {top_p}", param="top_p")

    conversation, image_bytes = _parse_messages(body.get("messages"))
    if len(image_bytes) != num_images:
        order = " (before, after)" if num_images == 2 else ""
        raise APIError(
            400,
            f"this model reads {_images(num_images)} per conversation{order}, "
            f"but the messages hold {_images(len(image_bytes))}",
            param="messages",
        )
    images = [_decode_image(data, image_size, interpolation, param) for param, data in image_bytes]
    return ChatRequest(model, conversation, torch.stack(images), max_tokens, temperature, top_p)


def _parse_messages(messages: Any) -> tuple[list[Turn], list[tuple[str, bytes]]]:
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
        text = _parse_content(message.get("content"), f"{where}.content", images, allow_images=role == "user")
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


def _parse_content(content: Any, where: str, images: list[tuple[str, bytes]], *, allow_images: bool) -> str:
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
            images.append((f"{at}.image_url", _image_url_bytes(part.get("image_url"), f"{at}.image_url")))
        else:
            raise APIError(
                400, f"{at} must be an object with 'type' 'text' or 'image_url', got {_short(part)}", param=at
            )
    return "\n".join(t for t in texts if t)


def _image_url_bytes(image_url: Any, where: str) -> bytes:
    if not isinstance(image_url, dict) or not isinstance(image_url.get("url"), str):
        raise APIError(400, f"{where} must be an object with a string 'url'", param=where)
    url: str = image_url["url"]
    if url.startswith(("http://", "https://")):
        # No server-side fetching: it would let any client make this server request arbitrary hosts.
        raise APIError(
            400,
            f"{where}.url: remote image URLs are not fetched; send the image inline as a data URL "
            "('data:image/png;base64,...')",
            param=f"{where}.url",
            code="remote_image_url",
        )
    header, comma, payload = url.partition(",")
    if not url.startswith("data:") or not comma:
        raise APIError(
            400,
            f"{where}.url must be a data URL 'data:image/<format>;base64,<data>', got {_short(url)}",
            param=f"{where}.url",
        )
    media_type, *params = header[len("data:") :].split(";")
    if not media_type.startswith("image/") or "base64" not in params:
        raise APIError(
            400,
            f"{where}.url must be a base64 image data URL 'data:image/<format>;base64,...', got '{header}'",
            param=f"{where}.url",
        )
    if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise APIError(
            413,
            f"{where}.url: the image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB",
            param=f"{where}.url",
        )
    try:
        # Whitespace is dropped first: some encoders wrap base64 at 76 columns.
        return base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise APIError(
            400, f"{where}.url: the data URL is not valid base64 ({exc})", param=f"{where}.url"
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


def chat_completion(
    *, model: str, answer: str, finish_reason: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """A `chat.completion` object with one choice."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def model_list(model: str, created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": model, "object": "model", "created": created, "owned_by": "rsforge"}],
    }
