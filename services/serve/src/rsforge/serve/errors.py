"""The error every request rule raises: `APIError`, rendered as OpenAI's error object."""

from __future__ import annotations

import json
import uuid
from typing import Any


class APIError(Exception):
    """A request the server will not run; `status` is the HTTP status, `param` the offending field.

    The ingress renders it as OpenAI's error object (`to_dict`), so the official `openai` client
    raises its usual `BadRequestError` / `NotFoundError`."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        # Messages and params echo client input, which may hold lone surrogates that no UTF-8 answer can carry.
        message, param = _printable(message), None if param is None else _printable(param)
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def to_dict(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages ("object", "array", "null", ...)."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def excerpt(value: Any, limit: int = 60) -> str:
    """A value as JSON, cut to `limit` characters, for messages."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def request_id() -> str:
    """An id for one failed request: the client gets it in the answer, the server log gets the details."""
    return f"req_{uuid.uuid4().hex}"


def server_error(rid: str, status: int = 500) -> APIError:
    """A 5xx for a fault on this side: a generic message and the request id, never the exception itself
    (it may name actors, processes and node addresses)."""
    message = (f"the server could not answer this request (request id {rid}; the server log has the details)"
               if status == 500 else f"the model is restarting or overloaded; retry shortly (request id {rid})")
    return APIError(status, message, code="internal_error" if status == 500 else "service_unavailable")
