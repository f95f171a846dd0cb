"""OpenAI chat-completions answers: the shapes of a completion, its streamed chunks and the model list."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any


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
