"""OpenAI chat-completions requests: parsing and validation (the answers' shapes: `openai_responses`).

Pure Python (plus the image decoding of `images`): no Ray, no FastAPI, so every rule here is
unit-tested without starting a server. Anything wrong with a request raises `APIError`, which the
ingress renders as OpenAI's error object, so the official `openai` client raises its usual
`BadRequestError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from rsforge.core.sample import Turn
from rsforge.serve.errors import APIError, excerpt, json_type
from rsforge.serve.images import Fetch, data_url_bytes, decode_image
from rsforge.serve.limits import DEFAULT_LIMITS, Limits, check_prompt, check_text

MAX_TOKENS_LIMIT = 512
DEFAULT_MAX_TOKENS = 64
MAX_CHOICES = 8  # `n`: each choice is a full decoding row, so many would crowd out other requests' batches
MAX_STOP_STRINGS = 4  # OpenAI's own limit
MAX_STOP_LENGTH = 64
# Greedy by default (OpenAI defaults to 1.0): RS answers (yes/no, counts, grids) should be repeatable.
DEFAULT_TEMPERATURE = 0.0
# Below this, sampling is decoded greedily (as temperature 0): logits divided by 1e-40 overflow to inf
# and the probabilities to nan, and sampling this cold is argmax anyway.
MIN_SAMPLING_TEMPERATURE = 0.01

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
     "stream_options", "stop", "repetition_penalty", "num_beams"}
    | _IGNORED_FIELDS
    | _UNSUPPORTED_FIELDS
)


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
    repetition_penalty: float = 1.0
    num_beams: int = 1

    def sampling_key(self) -> tuple:
        """Requests with equal keys can share one batched `generate` call. Greedy decoding ignores
        top_p, so all greedy requests share a key."""
        top_p = 1.0 if self.temperature == 0 else self.top_p
        return (self.temperature, top_p, self.stop, self.n, self.repetition_penalty, self.num_beams)


def load_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except RecursionError:
        raise APIError(400, "the request body is not valid JSON: nested too deeply") from None
    except ValueError as exc:
        # JSONDecodeError and UnicodeDecodeError are ValueErrors, and so is an integer of over 4300
        # digits (Python's limit on converting them).
        raise APIError(400, f"the request body is not valid JSON: {exc}") from None


def requested_model(body: Any, served: list[str]) -> str:
    """The served model a request body names (400 when it names none, 404 when it names another)."""
    if not isinstance(body, dict):
        raise APIError(400, f"the request body must be a JSON object, got {json_type(body)}")
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
    limits: Limits = DEFAULT_LIMITS,
    max_context: int | None = None,
    repetition_penalty: float = 1.0,
) -> ChatRequest:
    """Validate an OpenAI chat-completion request body for the served model `model_name`, which reads
    `num_images` images of `image_size` pixels per conversation and a prompt of at most `max_context`
    tokens (None: not checked here). Remote image URLs are read with `fetch` (None: refused). Text and
    image sizes are checked against `limits` before any image is decoded. `repetition_penalty` is the
    model's default (its recipe's `eval.repetition_penalty`); the vLLM-style extensions `repetition_penalty`
    and `num_beams` (beam search: greedy, not streamed) override it per request."""
    if not isinstance(body, dict):
        raise APIError(400, f"the request body must be a JSON object, got {json_type(body)}")
    for key in body:
        if key not in _KNOWN_FIELDS:
            raise APIError(400, f"unrecognized request argument: '{key}'", param=key)
    for key in sorted(_UNSUPPORTED_FIELDS & body.keys()):
        if body[key] not in (None, False):
            raise APIError(400, f"'{key}' is not supported by this server", param=key)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise APIError(400, f"'stream' must be a boolean, got {excerpt(stream)}", param="stream")
    include_usage = _stream_options(body.get("stream_options"), bool(stream))
    requested_model(body, [model_name])
    model = body["model"]
    max_tokens = _max_tokens(body)
    temperature = _number(body, "temperature", DEFAULT_TEMPERATURE)
    if not 0.0 <= temperature <= 2.0:
        raise APIError(400, f"'temperature' must be between 0 and 2, got {temperature}", param="temperature")
    if temperature < MIN_SAMPLING_TEMPERATURE:
        temperature = 0.0
    top_p = _number(body, "top_p", 1.0)
    if not 0.0 < top_p <= 1.0:
        raise APIError(400, f"'top_p' must be greater than 0 and at most 1, got {top_p}", param="top_p")
    n = _number(body, "n", 1, integer=True)
    if not 1 <= n <= MAX_CHOICES:
        raise APIError(400, f"'n' must be between 1 and {MAX_CHOICES}, got {n}", param="n")
    num_beams = _number(body, "num_beams", 1, integer=True)
    if not 1 <= num_beams <= MAX_CHOICES:
        raise APIError(400, f"'num_beams' must be between 1 and {MAX_CHOICES}, got {num_beams}", param="num_beams")
    if n > 1 and temperature == 0 and num_beams == 1:
        raise APIError(
            400,
            f"'n' = {n} needs sampling: set 'temperature' to at least {MIN_SAMPLING_TEMPERATURE} "
            f"(greedy decoding would give {n} identical answers)",
            param="n",
        )
    stop = _stop(body.get("stop"))
    repetition_penalty = _number(body, "repetition_penalty", repetition_penalty)
    if not 0.0 < repetition_penalty <= 2.0:
        raise APIError(400, f"'repetition_penalty' must be greater than 0 and at most 2, got {repetition_penalty}",
                       param="repetition_penalty")
    if num_beams > 1 and (temperature > 0 or stream or n > num_beams):
        raise APIError(400, "'num_beams' > 1 is beam search: deterministic (temperature 0), answered whole (no "
                       "stream), with 'n' at most 'num_beams'", param="num_beams")

    conversation, image_bytes = _parse_messages(body.get("messages"), fetch, limits)
    check_prompt([turn.text for turn in conversation], max_context, limits)
    if len(image_bytes) != num_images:
        order = " (before, after)" if num_images == 2 else ""
        raise APIError(
            400,
            f"this model reads {_images(num_images)} per conversation{order}, "
            f"but the messages hold {_images(len(image_bytes))}",
            param="messages",
        )
    images = [decode_image(data, image_size, interpolation, f"{param}.url", limits.max_image_pixels)
              for param, data in image_bytes]
    return ChatRequest(
        model, conversation, torch.stack(images), max_tokens, temperature, top_p,
        n=n, stop=stop, stream=bool(stream), include_usage=include_usage,
        repetition_penalty=repetition_penalty, num_beams=num_beams,
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
        raise APIError(400, f"'stop' must be a non-empty string or an array of them, got {excerpt(stop)}", param="stop")
    if len(strings) > MAX_STOP_STRINGS:
        raise APIError(400, f"'stop' may hold at most {MAX_STOP_STRINGS} strings, got {len(strings)}", param="stop")
    if any(len(s) > MAX_STOP_LENGTH for s in strings):
        raise APIError(400, f"each 'stop' string may be at most {MAX_STOP_LENGTH} characters long", param="stop")
    return tuple(strings)


def _parse_messages(messages: Any, fetch: Fetch | None = None, limits: Limits = DEFAULT_LIMITS
                    ) -> tuple[list[Turn], list[tuple[str, bytes]]]:
    """-> (turns, [(param path, raw image bytes)]) with images in order of appearance."""
    if not isinstance(messages, list) or not messages:
        raise APIError(400, "'messages' is required and must be a non-empty array", param="messages")
    turns: list[Turn] = []
    images: list[tuple[str, bytes]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise APIError(400, f"{where} must be an object, got {json_type(message)}", param=where)
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
            message.get("content"), f"{where}.content", images, limits, allow_images=role == "user", fetch=fetch
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
    content: Any, where: str, images: list[tuple[str, bytes]], limits: Limits, *, allow_images: bool,
    fetch: Fetch | None = None,
) -> str:
    if isinstance(content, str):
        check_text(content, where, limits)
        return content
    if not isinstance(content, list):
        raise APIError(
            400,
            f"{where} must be a string or an array of content parts, got {json_type(content)}",
            param=where,
        )
    texts: list[str] = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise APIError(400, f"{at}.text must be a string", param=f"{at}.text")
            check_text(part["text"], f"{at}.text", limits)
            texts.append(part["text"])
        elif kind == "image_url":
            if not allow_images:
                raise APIError(400, f"{at}: only user messages may carry images", param=at)
            images.append((f"{at}.image_url", image_url_bytes(part.get("image_url"), f"{at}.image_url", fetch)))
        else:
            raise APIError(
                400, f"{at} must be an object with 'type' 'text' or 'image_url', got {excerpt(part)}", param=at
            )
    return "\n".join(t for t in texts if t)


def image_url_bytes(image_url: Any, where: str, fetch: Fetch | None = None) -> bytes:
    """The image bytes of an `image_url` object: a base64 data URL, or a remote URL read by `fetch`."""
    if not isinstance(image_url, dict) or not isinstance(image_url.get("url"), str):
        raise APIError(400, f"{where} must be an object with a string 'url'", param=where)
    return data_url_bytes(image_url["url"], f"{where}.url", fetch)


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
        raise APIError(400, f"'{key}' must be {kind}, got {excerpt(value)}", param=key)
    return value


def _images(n: int) -> str:
    return f"{n} image" if n == 1 else f"{n} images"
