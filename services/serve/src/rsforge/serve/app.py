"""Ray Serve app: rsforge models behind OpenAI's `/v1/chat/completions`, a change-mask API and a web page.

The app graph: one `Ingress` deployment (FastAPI: routing, validation, image decoding, auth, metrics,
the page) holds a DeploymentHandle per `ModelDeployment`, one deployment per model directory, each
with its own replicas (fixed or autoscaled), CPU/GPU reservation and dynamic batching. The driver
sends a model replica only the model directory; the replica rebuilds the model from the recipe with
its own installed plugins (`PluginManager()`), so nothing registered in the driver is assumed to
exist on the worker.

Batching: concurrent chat requests to one replica are collected by `@serve.batch` (up to
`max_batch_size`, waiting at most `batch_wait_ms` for more), grouped by compatible sampling
parameters, and each group runs as one batched `generate` call. Streamed requests ride in the same
batches: the decoder's `on_tokens` callback hands each step's tokens to the request's queue.
"""

# No `from __future__ import annotations` here: Serve's ingress re-wraps the route methods and FastAPI
# must see real classes (a string "Request" would become a query parameter).
import asyncio
import hmac
import importlib.resources
import inspect
import logging
import signal
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from ray import serve
from ray.serve.deployment import Application
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException

from rsforge.core.model import RECIPE_FILE
from rsforge.serve.config import ServeConfig
from rsforge.serve.masks import DetectRequest, detect_response, parse_detect_request
from rsforge.serve.metrics import Metrics
from rsforge.serve.openai_protocol import (
    MAX_IMAGE_BYTES,
    SSE_DONE,
    APIError,
    ChatRequest,
    chat_chunk,
    chat_completion,
    completion_id,
    load_json,
    model_list,
    parse_chat_request,
    requested_model,
    sse,
    usage_chunk,
)
from rsforge.serve.remote import ImageFetcher

APP_NAME = "rsforge"
# Routes counted by name in /metrics; anything else is "other", so random paths cannot grow the label set.
ROUTES = ("/", "/healthz", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/change/detect")
OPEN_ROUTES = ("/", "/healthz")  # no API key needed: the page itself holds no data, health checks carry none
INGRESS_MAX_ONGOING = 1024  # the ingress only awaits model replicas, so it can hold many requests at once
MIN_MODEL_ONGOING = 64

logger = logging.getLogger("ray.serve")
api = FastAPI(title="rsforge serve", summary="OpenAI-compatible chat and change-mask API for rsforge models")


@api.exception_handler(APIError)
async def _api_error(_: Request, exc: APIError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.status)


@api.exception_handler(HTTPException)
async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
    # Unknown routes and wrong methods answer in OpenAI's error shape too, so clients parse one format.
    return JSONResponse(APIError(exc.status_code, str(exc.detail)).to_dict(), status_code=exc.status_code)


@api.exception_handler(Exception)
async def _server_error(_: Request, exc: Exception) -> JSONResponse:
    # A fault on this side (a replica that died, a bug): logged, and still in OpenAI's error shape.
    logger.exception("request failed", exc_info=exc)
    error = APIError(500, f"internal error: {type(exc).__name__}: {exc}")
    return JSONResponse(error.to_dict(), status_code=500)


@api.middleware("http")
async def _auth_and_metrics(request: Request, call_next):
    start = time.perf_counter()
    path = request.url.path
    ingress: Ingress = request.app.state.ingress
    if ingress.api_key is not None and path not in OPEN_ROUTES and not ingress.authorized(request):
        error = APIError(401, "missing or invalid API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
        response = JSONResponse(error.to_dict(), status_code=401)
    else:
        try:
            response = await call_next(request)
        except Exception:
            # Answered as a 500 by `_server_error`, outside this middleware; counted here.
            ingress.metrics.observe_request(path if path in ROUTES else "other", 500, time.perf_counter() - start)
            raise
    ingress.metrics.observe_request(path if path in ROUTES else "other", response.status_code,
                                    time.perf_counter() - start)
    return response


def _error(outcome: dict[str, Any]) -> APIError:
    return APIError(**outcome["error"])


@dataclass
class _Pending:
    """A chat request waiting in (or running in) a batch. `queue` receives a streamed request's
    pieces as (choice index, text); `cancelled` is set when its client went away."""

    request: ChatRequest
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue | None = None
    cancelled: bool = False
    emitted: list[str] = field(default_factory=list)


# A short shutdown poll: replicas stop as soon as their requests are done (Serve polls every 2 s by default).
@serve.deployment(max_constructor_retry_count=1, graceful_shutdown_wait_loop_s=0.25)
class ModelDeployment:
    def __init__(self, model_dir: str, name: str, max_batch_size: int = 16, batch_wait_s: float = 0.01) -> None:
        from rsforge.core.model import RSForgeModel
        from rsforge.core.plugins import PluginManager

        # The GPU only when this replica reserved one (`num_gpus`); outside Ray (tests, benches) the CPU.
        use_gpu = torch.cuda.is_available() and ray.is_initialized() and bool(ray.get_gpu_ids())
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.model = RSForgeModel.from_pretrained(model_dir, plugins=PluginManager(), device=self.device)
        self.name = name
        self.created = int(time.time())
        decoder = self.model.decoder
        self.tokenizer = decoder.tokenizer if decoder is not None else None
        # A decoder that takes `on_tokens` streams token by token and ends rows at each request's own
        # max_tokens; any other streams each answer whole and batches only equal max_tokens.
        self.streams = decoder is not None and "on_tokens" in inspect.signature(decoder.generate).parameters
        # One model call at a time: concurrent torch calls on one model only fight over the same cores.
        self._model_lock = threading.Lock()
        self._batch.set_max_batch_size(max_batch_size)
        self._batch.set_batch_wait_timeout_s(batch_wait_s)

    def info(self) -> dict[str, Any]:
        """What the ingress needs to parse requests for this model, and what the driver prints."""
        return {
            "model": self.name,
            "created": self.created,
            "num_images": self.model.num_images,
            "image_size": self.model.image_size,
            "interpolation": self.model.interpolation,
            "chat": self.model.decoder is not None,
            "masks": bool(self.model.mask_heads),
            "streams_tokens": self.streams,
        }

    async def chat(self, request: ChatRequest) -> dict[str, Any]:
        """{"choices": [(text, finish_reason)], "prompt_tokens", "completion_tokens", "batch_size"} or {"error"}."""
        return await self._batch(_Pending(request, asyncio.get_running_loop()))

    async def chat_stream(self, request: ChatRequest) -> AsyncIterator[dict[str, Any]]:
        """{"delta": (choice index, text)} events as tokens come, then {"final": <as `chat`>}."""
        pending = _Pending(request, asyncio.get_running_loop(), queue=asyncio.Queue())
        task = asyncio.ensure_future(self._batch(pending))
        # Also when the batch fails as a whole: the loop below must never wait forever.
        task.add_done_callback(lambda _: pending.queue.put_nowait(None))
        try:
            while (delta := await pending.queue.get()) is not None:
                yield {"delta": delta}
            yield {"final": task.result()}
        finally:
            pending.cancelled = True  # the client went away: its rows stop at the next step

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _batch(self, pendings: list[_Pending]) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.run_batch, pendings)

    def run_batch(self, pendings: list[_Pending]) -> list[dict[str, Any]]:
        """One outcome per request: requests with compatible sampling share one `generate` call."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, pending in enumerate(pendings):
            key = pending.request.sampling_key()
            groups[key if self.streams else (*key, pending.request.max_tokens)].append(i)
        outcomes: list[dict[str, Any]] = [{}] * len(pendings)
        for indices in groups.values():
            for i, outcome in zip(indices, self._run_group([pendings[i] for i in indices]), strict=True):
                outcomes[i] = outcome
        return outcomes

    def _run_group(self, group: list[_Pending]) -> list[dict[str, Any]]:
        first = group[0].request
        n = first.n
        rows = [(p, i) for p in group for i in range(n)]  # input-major, as `generate` returns them
        ids: list[list[int]] = [[] for _ in rows]
        for pending in group:
            pending.emitted = [""] * n

        def on_tokens(tokens: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
            ended = []
            for r, (token, live) in enumerate(zip(tokens.tolist(), alive.tolist(), strict=True)):
                pending, choice = rows[r]
                if live:
                    ids[r].append(token)
                    if pending.queue is not None:
                        self._push(pending, choice, self._safe_text(ids[r], pending.request.stop))
                ended.append(pending.cancelled or len(ids[r]) >= pending.request.max_tokens)
            return torch.tensor(ended)

        images = torch.stack([p.request.images for p in group]).to(self.device)
        conversations = [p.request.conversation for p in group]
        options = {
            "max_new_tokens": max(p.request.max_tokens for p in group),
            "temperature": first.temperature,
            "top_p": first.top_p,
            "num_return_sequences": n,
            "stop": list(first.stop),
        }
        if self.streams:
            options["on_tokens"] = on_tokens
        try:
            with self._model_lock:
                visual = self.model.decoder_input(images, conversations)
                texts = self.model.decoder.generate(visual, conversations, **options)
        except ValueError as exc:
            if len(group) > 1:
                # One request the model cannot take (a prompt over the context) must not fail the others.
                return [self._run_group([p])[0] for p in group]
            # The kernel's convention: ValueError means input the model cannot take, so it is the client's to fix.
            return [{"error": {"status": 400, "message": str(exc), "param": "messages"}}]
        except Exception as exc:
            # A fault on this side: logged, answered as a 500, and the replica keeps serving.
            logger.exception("generation failed")
            return [{"error": {"status": 500, "message": f"generation failed: {type(exc).__name__}: {exc}"}}] * len(
                group
            )
        outcomes = []
        for j, pending in enumerate(group):
            choices, completion = [], 0
            for choice in range(n):
                r = j * n + choice
                text = texts[r]
                used = len(ids[r]) if self.streams else self.count_tokens(text)
                completion += used
                choices.append((text, "length" if used >= pending.request.max_tokens else "stop"))
                if pending.queue is not None:
                    self._push(pending, choice, text)
            prompt = sum(self.count_tokens(turn.text) for turn in pending.request.conversation)
            outcomes.append({"choices": choices, "prompt_tokens": prompt, "completion_tokens": completion,
                             "batch_size": len(group)})
        return outcomes

    def _safe_text(self, ids: list[int], stop: tuple[str, ...]) -> str:
        """The part of a row's text so far that later tokens cannot change: cut at a stop string, minus
        what could still become one, trailing whitespace (the final answer is stripped) and a
        half-decoded character."""
        text = self.tokenizer.decode(ids, skip_special_tokens=True).lstrip()
        cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
        if cuts:
            text = text[: min(cuts)]
        elif stop:
            text = text[: max(0, len(text) - max(len(s) for s in stop) + 1)]
        return text.rstrip().removesuffix("\ufffd")

    @staticmethod
    def _push(pending: _Pending, choice: int, text: str) -> None:
        # Only ever append: what a client received cannot be taken back.
        sent = pending.emitted[choice]
        if len(text) > len(sent) and text.startswith(sent):
            pending.emitted[choice] = text
            pending.loop.call_soon_threadsafe(pending.queue.put_nowait, (choice, text[len(sent) :]))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    async def detect(self, images: torch.Tensor, threshold: float) -> dict[str, Any]:
        """images (2, 3, S, S) -> {"mask": uint8 (S, S): 0/255, or class ids} or {"error"}."""
        if not self.model.mask_heads:
            return {"error": {"status": 400, "param": "model",
                              "message": f"the model '{self.name}' has no mask head, so it cannot detect changes"}}
        return {"mask": await asyncio.to_thread(self._predict_mask, images, threshold)}

    def _predict_mask(self, images: torch.Tensor, threshold: float) -> np.ndarray:
        images = images.to(self.device)
        with self._model_lock:
            mask = self.model.predict_mask(images[None, 0], images[None, 1], threshold=threshold)[0]
        if mask.dtype == torch.bool:
            return mask.to(torch.uint8).mul(255).cpu().numpy()
        return mask.to(torch.uint8).cpu().numpy()


@serve.deployment(max_ongoing_requests=INGRESS_MAX_ONGOING, ray_actor_options={"num_cpus": 0},
                  graceful_shutdown_wait_loop_s=0.25)
@serve.ingress(api)
class Ingress:
    def __init__(self, models: dict[str, DeploymentHandle], settings: dict[str, Any]) -> None:
        self.models = models
        self.api_key: str | None = settings.get("api_key")
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
        return model_list([(i["model"], i["created"]) for i in infos])

    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request):
        body = load_json(await request.body())
        name = requested_model(body, list(self.models))
        info = await self._info(name)
        if not info["chat"]:
            raise APIError(400, f"the model '{name}' has no decoder, so it cannot chat", param="model")
        # Image decoding (and any allowed fetch) is blocking work: off the event loop.
        chat = await asyncio.to_thread(
            parse_chat_request, body, model_name=name, num_images=info["num_images"],
            image_size=info["image_size"], interpolation=info["interpolation"], fetch=self.fetch,
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

    @api.post("/v1/change/detect")
    async def change_detect(self, request: Request) -> dict[str, Any]:
        body = load_json(await request.body())
        masks = [name for name in self.models if (await self._info(name))["masks"]]
        if isinstance(body, dict) and "model" not in body and len(masks) == 1:
            body = {**body, "model": masks[0]}  # one mask model: `model` may be left out
        name = requested_model(body, list(self.models))
        info = await self._info(name)
        parsed: DetectRequest = await asyncio.to_thread(
            parse_detect_request, body, model_name=name, image_size=info["image_size"],
            interpolation=info["interpolation"], fetch=self.fetch,
        )
        outcome = await self.models[name].detect.remote(parsed.images, parsed.threshold)
        if "error" in outcome:
            raise _error(outcome)
        return await asyncio.to_thread(detect_response, name, outcome["mask"], parsed.format)


def model_name(model_dir: Path) -> str:
    """The name a model is served under by default: its recipe's."""
    recipe = yaml.safe_load((model_dir / RECIPE_FILE).read_text())
    return recipe.get("name") or model_dir.name


def build_app(config: ServeConfig) -> Application:
    """The bound Serve application: an ingress and one model deployment per entry of `config.models`."""
    config = config.checked()
    models: dict[str, Application] = {}
    for i, entry in enumerate(config.models):
        path = Path(entry.path).expanduser().resolve()
        name = entry.name or model_name(path)
        if name in models:
            raise ValueError(f"models[{i}]: a second model named '{name}'; give each a distinct name")
        batch = entry.max_batch_size or config.max_batch_size
        wait_ms = config.batch_wait_ms if entry.batch_wait_ms is None else entry.batch_wait_ms
        options: dict[str, Any] = {
            "name": f"model{i}",
            "ray_actor_options": {"num_cpus": config.num_cpus, "num_gpus": config.num_gpus},
            # Room for a full batch plus the next one filling while it runs, and never so few that the
            # router backs off and retries (which costs far more than waiting in the replica's queue).
            "max_ongoing_requests": max(2 * batch, MIN_MODEL_ONGOING),
        }
        if config.autoscaling is not None:
            options["autoscaling_config"] = config.autoscaling
        else:
            options["num_replicas"] = config.replicas
        models[name] = ModelDeployment.options(**options).bind(str(path), name, batch, wait_ms / 1000)
    settings = {
        "api_key": config.api_key,
        "allow_image_hosts": config.allow_image_hosts,
        "image_fetch_timeout_s": config.image_fetch_timeout_s,
    }
    return Ingress.bind(models, settings)


@dataclass
class RunningApp:
    """A started app: `url` is the OpenAI base URL (…/v1) to give a client, `models` what each model takes."""

    url: str
    models: list[dict[str, Any]]
    started_ray: bool

    def stop(self) -> None:
        serve.delete(APP_NAME)
        if self.started_ray:
            ray.shutdown()

    def wait(self) -> None:
        """Serve until Ctrl-C (or SIGTERM, as sent by `kill` and process managers), then stop."""
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(config: ServeConfig, *, blocking: bool = True, address: str | None = None) -> RunningApp:
    """Start Serve (HTTP on `config.host:port`, loopback by default) with the configured models.

    Uses the Ray instance already initialised in this process, else connects to `address`
    (None: a new local instance). With `blocking`, serves until Ctrl-C and stops the app.
    If Serve already runs on that cluster, its existing HTTP host and port stay in force.
    """
    app = build_app(config)
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=address)
    running = RunningApp(url=f"http://{config.host}:{config.port}/v1", models=[], started_ray=started_ray)
    serve.start(http_options={"host": config.host, "port": config.port})
    try:
        handle = serve.run(app, name=APP_NAME, route_prefix="/")
        running.models = handle.info.remote().result()
    except BaseException:
        running.stop()  # leave no half-deployed app behind on a shared cluster
        raise
    if blocking:
        running.wait()
    return running
