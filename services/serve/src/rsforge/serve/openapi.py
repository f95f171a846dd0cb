"""The OpenAPI description of the POST routes: request bodies, answers and errors as pydantic models.

The routes parse their bodies themselves (`openai_requests`, `masks`: every rule a 4xx naming the
field, in OpenAI's error shape), so these models only describe the wire format in `/openapi.json`,
for generated clients and fuzzers; they never validate a request.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

from rsforge.serve.openai_requests import MAX_CHOICES, MAX_STOP_STRINGS, MAX_TOKENS_LIMIT


class ErrorBody(BaseModel):
    message: str
    type: Literal["invalid_request_error", "server_error"]
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx answer (5xx: a generic message with a request id)."""

    error: ErrorBody


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImageURL(BaseModel):
    url: str = Field(description="a base64 data URL 'data:image/png;base64,...' (or an allowed http(s) URL)")


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageURL


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart | ImagePart]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat-completion request, as far as this server takes it; unknown fields are a 400."""

    model_config = ConfigDict(extra="forbid")
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_LIMIT)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS_LIMIT)
    temperature: float | None = Field(default=None, ge=0, le=2, description="default 0 (greedy)")
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int | None = Field(default=None, ge=1, le=MAX_CHOICES)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = Field(default=None, description=f"at most {MAX_STOP_STRINGS} strings")
    # Extensions (vLLM's names): the model's decoding as its authors evaluate it, e.g. DeltaVLM's 1.5 / 5 beams.
    repetition_penalty: float | None = Field(default=None, gt=0, le=2,
                                             description="default: the model recipe's eval.repetition_penalty")
    num_beams: int | None = Field(default=None, ge=1, le=MAX_CHOICES,
                                  description="beam search (temperature 0, not streamed, n <= num_beams)")
    # Accepted and ignored (they tune sampling statistics or bookkeeping only).
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    logit_bias: dict[str, float] | None = None
    service_tier: str | None = None
    parallel_tool_calls: bool | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class ChangeDetectRequest(BaseModel):
    """Two scenes of the same grid, read at native resolution in overlapping tiles (as `rsforge detect`)."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(default=None, description="may be left out when one served model has a mask head")
    before: str = Field(description="the before scene as a base64 data URL: PNG, JPEG or GeoTIFF (georeferenced)")
    after: str = Field(description="the after scene, same size (and CRS and geotransform) as the before one")
    format: Literal["png", "geojson"] = "png"
    threshold: float = Field(default=0.5, gt=0, lt=1)
    prompt: str | None = Field(default=None, min_length=1, description="what to look for, for text-guided mask "
                               "heads (others ignore it); default: the recipe's `change_mask` prompt, else the "
                               "head's own default prompt")


class ChangeStats(BaseModel):
    changed_pixels: int
    changed_fraction: float
    changed_area: float | None = Field(description="in map units² (georeferenced scenes only)")
    regions: int = Field(description="8-connected regions of changed pixels")
    tiles: int = Field(description="tiles the scene was read in")


class ChangeMask(BaseModel):
    object: Literal["change.mask"]
    model: str
    width: int = Field(description="the scene's width: the mask has its native resolution")
    height: int
    crs: str | None = Field(description="the before scene's CRS, None when it has none")
    transform: list[float] | None = Field(description="its geotransform in GDAL order (x0, dx, rx, y0, ry, dy)")
    stats: ChangeStats
    mask_png: str | None = None
    geojson: dict[str, Any] | None = None


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse, "description": "an error in OpenAI's shape"} for status in statuses}


def _route(request: type[BaseModel], answer: type[BaseModel], *, stream: bool = False) -> dict[str, Any]:
    """The keyword arguments of a POST route's decorator that describe `request` and its answers."""
    ok: dict[str, Any] = {"model": answer, "description": "the answer"}
    if stream:
        ok["content"] = {"text/event-stream": {"schema": {"type": "string"}}}
    body = {"$ref": f"#/components/schemas/{request.__name__}"}
    return {
        "response_model": None,
        "responses": {200: ok, **_errors(400, 401, 404, 413, 500, 503)},
        "openapi_extra": {"requestBody": {"required": True, "content": {"application/json": {"schema": body}}}},
    }


CHAT_ROUTE = _route(ChatCompletionRequest, ChatCompletion, stream=True)
DETECT_ROUTE = _route(ChangeDetectRequest, ChangeMask)
REQUEST_MODELS = (ChatCompletionRequest, ChangeDetectRequest)


def install_openapi(api: FastAPI) -> None:
    """Make `api` describe the request models too: FastAPI only adds the models it validates with."""

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = get_openapi(title=api.title, version=api.version, summary=api.summary, routes=api.routes)
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in REQUEST_MODELS:
                definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(definition.pop("$defs", {}))
                schemas[model.__name__] = definition
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi
