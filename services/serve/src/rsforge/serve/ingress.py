"""The ingress deployment: FastAPI routes, validation and image decoding, auth, errors, metrics, the page.

One `Ingress` replica holds a DeploymentHandle per model deployment (`replica.ModelDeployment`) and
sends each request to the model it names. Everything that can be refused is refused here, before a
model replica sees it; every error, ours or a replica's, answers in OpenAI's error shape.
"""

# No `from __future__ import annotations` here: Serve's ingress re-wraps the route methods and FastAPI
# must see real classes (a string "Request" would become a query parameter).
import asyncio
import functools
import hmac
import importlib.resources
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException

from rsforge.serve.errors import APIError, request_id, server_error
from rsforge.serve.images import MAX_IMAGE_BYTES
from rsforge.serve.limits import Limits
from rsforge.serve.masks import DetectRequest, detect_response, parse_detect_request
from rsforge.serve.openai_requests import ChatRequest, load_json, parse_chat_request, requested_model
from rsforge.serve.openai_responses import (
    SSE_DONE,
    chat_chunk,
    chat_completion,
    completion_id,
    model_list,
    sse,
    usage_chunk,
)
from rsforge.serve.openapi import CHAT_ROUTE, DETECT_ROUTE, install_openapi
from rsforge.serve.prometheus import Metrics
from rsforge.serve.remote import ImageFetcher, names_remote_image

# Routes counted by name in /metrics; anything else is "other", so random paths cannot grow the label set.
ROUTES = ("/", "/healthz", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/change/detect")
OPEN_ROUTES = ("/", "/healthz")  # no API key needed: the page itself holds no data, health checks carry none
INGRESS_MAX_ONGOING = 1024  # the ingress only awaits model replicas, so it can hold many requests at once
# What Ray raises while a model replica is dead, restarting or full: a 503 the client may retry, not a 500.
UNAVAILABLE = (RayActorError, ActorUnavailableError, DeploymentUnavailableError, ReplicaUnavailableError,
               BackPressureError)
RETRY_AFTER_S = 2

logger = logging.getLogger("ray.serve")
api = FastAPI(title="rsforge serve", summary="OpenAI-compatible chat and change-mask API for rsforge models")
install_openapi(api)


@api.exception_handler(APIError)
async def _api_error(_: Request, exc: APIError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.status)


@api.exception_handler(HTTPException)
async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
    # Unknown routes and wrong methods answer in OpenAI's error shape too, so clients parse one format;
    # the exception's headers carry what HTTP requires with it (`Allow` on a 405).
    return JSONResponse(APIError(exc.status_code, str(exc.detail)).to_dict(), status_code=exc.status_code,
                        headers=exc.headers)


def server_fault(exc: BaseException) -> JSONResponse:
    """A fault on this side (a replica that died, a bug) in OpenAI's error shape: a generic message and
    a request id; the exception, which may name actors, pids and node addresses, goes to the log only."""
    rid = request_id()
    status = 503 if isinstance(exc, UNAVAILABLE) else 500
    logger.error("request %s failed", rid, exc_info=exc)
    headers = {"X-Request-Id": rid} | ({"Retry-After": str(RETRY_AFTER_S)} if status == 503 else {})
    return JSONResponse(server_error(rid, status).to_dict(), status_code=status, headers=headers)


@api.exception_handler(Exception)
async def _last_resort(_: Request, exc: Exception) -> JSONResponse:
    # Whatever escapes the middleware below: without this handler Starlette answers a plain-text 500.
    return server_fault(exc)


@api.middleware("http")
async def _auth_and_metrics(request: Request, call_next):
    start = time.perf_counter()
    path = request.url.path
    try:
        ingress: Ingress = request.app.state.ingress
        if ingress.api_key is not None and path not in OPEN_ROUTES and not ingress.authorized(request):
            error = APIError(401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                             code="invalid_api_key")
            response = JSONResponse(error.to_dict(), status_code=401, headers={"WWW-Authenticate": "Bearer"})
        else:
            response = await call_next(request)
    except Exception as exc:
        # Answered here rather than re-raised: an exception leaving the app would reach Ray Serve,
        # which answers a plain-text "Internal Server Error".
        response = server_fault(exc)
    request.app.state.ingress.metrics.observe_request(path if path in ROUTES else "other", response.status_code,
                                                      time.perf_counter() - start)
    return response


def _error(outcome: dict[str, Any]) -> APIError:
    """The `APIError` of a replica's `{"error": ...}` outcome."""
    return APIError(**outcome["error"])


@serve.deployment(max_ongoing_requests=INGRESS_MAX_ONGOING, ray_actor_options={"num_cpus": 0},
                  graceful_shutdown_wait_loop_s=0.25)
@serve.ingress(api)
class Ingress:
    def __init__(self, models: dict[str, DeploymentHandle], settings: dict[str, Any]) -> None:
        self.models = models
        self.api_key: str | None = settings.get("api_key")
        self.limits = Limits(**settings.get("limits", {}))
        hosts = settings.get("allow_image_hosts") or []
        self.fetch = ImageFetcher(hosts, max_bytes=MAX_IMAGE_BYTES, timeout_s=settings["image_fetch_timeout_s"]) \
            if hosts else None
        self.metrics = Metrics()
        self._infos: dict[str, dict[str, Any]] = {}
        api.state.ingress = self  # the middleware's way to this replica's key and metrics

    def authorized(self, request: Request) -> bool:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(key.encode(), self.api_key.encode())

    async def info(self) -> list[dict[str, Any]]:
        """Each served model's `ModelDeployment.info()`, in the order of the config."""
        return [await self._info(name) for name in self.models]

    async def _info(self, name: str) -> dict[str, Any]:
        if name not in self._infos:
            self._infos[name] = await self.models[name].info.remote()
        return self._infos[name]

    @api.get("/", response_class=HTMLResponse)
    async def page(self) -> HTMLResponse:
        return HTMLResponse(importlib.resources.files("rsforge.serve").joinpath("static/index.html").read_text())

    @api.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        return {"status": "ok", "models": list(self.models)}

    @api.get("/metrics", response_class=PlainTextResponse)
    async def metrics_text(self) -> PlainTextResponse:
        return PlainTextResponse(self.metrics.render(), media_type="text/plain; version=0.0.4")

    @api.get("/v1/models")
    async def list_models(self) -> dict[str, Any]:
        infos = [await self._info(name) for name in self.models]
        listing = model_list([(i["model"], i["created"]) for i in infos])
        for entry, info in zip(listing["data"], infos, strict=True):  # the web page's first question
            entry["default_prompt"] = info["prompts"]["chat"]
        return listing

    async def _parse(self, parse, body: Any, **kwargs: Any) -> Any:
        """`parse(body, **kwargs)` off the event loop (image decoding is blocking work); a body naming a
        remote image on the fetcher's own pool, so slow hosts never hold the threads inline images use."""
        pool = self.fetch.pool if self.fetch is not None and names_remote_image(body) else None
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(parse, body, **kwargs))

    async def _body(self, request: Request) -> bytes:
        """The request body, refused with a 413 as soon as it passes `max_body_bytes` (by its declared
        length, else while it is read), before any of it is parsed."""
        limit = self.limits.max_body_bytes
        too_large = APIError(413, f"the request body is over the limit of {limit} bytes (max_body_bytes)",
                             code="request_too_large")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    @api.post("/v1/chat/completions", **CHAT_ROUTE)
    async def chat_completions(self, request: Request):
        body = load_json(await self._body(request))
        name = requested_model(body, list(self.models))
        info = await self._info(name)
        if not info["chat"]:
            raise APIError(400, f"the model '{name}' has no decoder, so it cannot chat", param="model")
        chat = await self._parse(
            parse_chat_request, body, model_name=name, num_images=info["num_images"],
            image_size=info["image_size"], interpolation=info["interpolation"], fetch=self.fetch,
            limits=self.limits, max_context=info.get("max_context"),
            repetition_penalty=info.get("repetition_penalty", 1.0),
        )
        handle = self.models[name]
        if chat.stream:
            return await self._stream(handle, chat)
        outcome = await handle.chat.remote(chat)
        if "error" in outcome:
            raise _error(outcome)
        self.metrics.observe_batch(outcome["batch_size"])
        return chat_completion(model=name, choices=outcome["choices"], prompt_tokens=outcome["prompt_tokens"],
                               completion_tokens=outcome["completion_tokens"])

    async def _stream(self, handle: DeploymentHandle, chat: ChatRequest) -> StreamingResponse:
        events = handle.options(stream=True).chat_stream.remote(chat)
        # The first event comes before the response starts: a request the model refuses (a prompt over
        # the context) still gets a proper 4xx status rather than an error inside a 200 stream.
        first = await events.__anext__()
        if "final" in first and "error" in first["final"]:
            raise _error(first["final"])
        ident, created = completion_id(), int(time.time())

        def chunk(index: int, delta: dict[str, str], finish: str | None = None) -> str:
            return sse(chat_chunk(id=ident, created=created, model=chat.model, index=index, delta=delta,
                                  finish_reason=finish))

        async def body() -> AsyncIterator[str]:
            for i in range(chat.n):
                yield chunk(i, {"role": "assistant", "content": ""})
            event = first
            while "delta" in event:
                index, text = event["delta"]
                yield chunk(index, {"content": text})
                event = await events.__anext__()
            final = event["final"]
            if "error" in final:  # only a server fault can come this late
                yield sse(_error(final).to_dict())
            else:
                self.metrics.observe_batch(final["batch_size"])
                for i, (_, finish) in enumerate(final["choices"]):
                    yield chunk(i, {}, finish)
                if chat.include_usage:
                    yield sse(usage_chunk(id=ident, created=created, model=chat.model,
                                          prompt_tokens=final["prompt_tokens"],
                                          completion_tokens=final["completion_tokens"]))
            yield SSE_DONE

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @api.post("/v1/change/detect", **DETECT_ROUTE)
    async def change_detect(self, request: Request) -> dict[str, Any]:
        body = load_json(await self._body(request))
        masks = [name for name in self.models if (await self._info(name))["masks"]]
        if isinstance(body, dict) and "model" not in body and len(masks) == 1:
            body = {**body, "model": masks[0]}  # one mask model: `model` may be left out
        name = requested_model(body, list(self.models))
        if not (await self._info(name))["masks"]:  # refused before the uploads are read
            raise APIError(400, f"the model '{name}' has no mask head, so it cannot detect changes", param="model")
        parsed: DetectRequest = await self._parse(parse_detect_request, body, model_name=name, fetch=self.fetch,
                                                  limits=self.limits)
        outcome = await self.models[name].detect.remote(parsed)
        if "error" in outcome:
            raise _error(outcome)
        return await asyncio.to_thread(detect_response, name, outcome["scene"], parsed.format)
