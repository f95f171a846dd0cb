"""Ray Serve app: an rsforge model behind OpenAI's `/v1/chat/completions`, plus `/v1/models` and `/healthz`.

The driver sends the replica only the model directory; the replica rebuilds the model from the
recipe with its own installed plugins (`PluginManager()`), so nothing registered in the driver is
assumed to exist on the worker.
"""

# No `from __future__ import annotations` here: Serve's ingress re-wraps the route methods and FastAPI
# must see real classes (a string "Request" would become a query parameter).
import asyncio
import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.deployment import Application
from starlette.exceptions import HTTPException

from rsforge.core.model import RECIPE_FILE
from rsforge.serve.openai_protocol import (
    APIError,
    ChatRequest,
    chat_completion,
    load_json,
    model_list,
    parse_chat_request,
)

APP_NAME = "rsforge"
# No CPU reservation by default: the replica shares a small machine (or a test's Ray instance)
# with other work instead of waiting for a free core; ask for more on a real cluster.
DEFAULT_NUM_CPUS = 0.0

logger = logging.getLogger("ray.serve")
api = FastAPI(title="rsforge serve", summary="OpenAI-compatible chat API for rsforge models")


@api.exception_handler(APIError)
async def _api_error(_: Request, exc: APIError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.status)


@api.exception_handler(HTTPException)
async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
    # Unknown routes and wrong methods answer in OpenAI's error shape too, so clients parse one format.
    return JSONResponse(APIError(exc.status_code, str(exc.detail)).to_dict(), status_code=exc.status_code)


@serve.deployment(ray_actor_options={"num_cpus": DEFAULT_NUM_CPUS}, max_constructor_retry_count=1)
@serve.ingress(api)
class ChatDeployment:
    def __init__(self, model_dir: str, name: str | None = None) -> None:
        from rsforge.core.model import RSForgeModel
        from rsforge.core.plugins import PluginManager

        self.model = RSForgeModel.from_pretrained(model_dir, plugins=PluginManager())
        self.model.eval()
        self.name = name or self.model.recipe.name
        if self.model.decoder is None:
            raise ValueError(f"model '{self.name}' has no decoder, so it cannot answer chat completions")
        self.created = int(time.time())
        self.tokenizer = self.model.decoder.tokenizer
        # One generation at a time: concurrent torch calls on one model only fight over the same cores.
        self._generate_lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        """What the driver prints: the served name and what a request must carry."""
        return {"model": self.name, "num_images": self.model.num_images, "image_size": self.model.image_size}

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok", "model": self.name}

    @api.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        return model_list(self.name, self.created)

    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> dict[str, Any]:
        body = load_json(await request.body())
        # Image decoding and generation are CPU-bound: off the event loop, so /healthz stays responsive.
        chat = await asyncio.to_thread(
            parse_chat_request,
            body,
            model_name=self.name,
            num_images=self.model.num_images,
            image_size=self.model.image_size,
            interpolation=self.model.interpolation,
        )
        try:
            answer = await asyncio.to_thread(self._generate, chat)
        except ValueError as exc:
            # The kernel's convention: ValueError means input the model cannot take (here, in practice,
            # a conversation longer than the decoder's context), so it is the client's to fix.
            raise APIError(400, str(exc), param="messages") from exc
        except Exception as exc:
            # Anything else is a fault on this side: logged, answered as a 500, and the replica keeps serving.
            logger.exception("generation failed")
            raise APIError(500, f"generation failed: {type(exc).__name__}: {exc}") from exc
        completion_tokens = self._count_tokens(answer)
        return chat_completion(
            model=self.name,
            answer=answer,
            finish_reason="length" if completion_tokens >= chat.max_tokens else "stop",
            # Text tokens only: the visual tokens the images become are not counted.
            prompt_tokens=sum(self._count_tokens(turn.text) for turn in chat.conversation),
            completion_tokens=completion_tokens,
        )

    def _generate(self, chat: ChatRequest) -> str:
        with self._generate_lock:
            (answer,) = self.model.generate(
                chat.images.unsqueeze(0),
                [chat.conversation],
                max_new_tokens=chat.max_tokens,
                temperature=chat.temperature,
                top_p=chat.top_p,
            )
        return answer

    def _count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))


def build_app(
    model_dir: str | Path, *, name: str | None = None, num_cpus: float = DEFAULT_NUM_CPUS
) -> Application:
    """The bound Serve application for the saved model in `model_dir`, served as `name`
    (default: the recipe's name)."""
    path = Path(model_dir).expanduser().resolve()
    # Checked here so a typo fails at once in the driver, not as a replica that cannot start.
    if not (path / RECIPE_FILE).is_file():
        raise FileNotFoundError(f"{path}: not a saved rsforge model (no {RECIPE_FILE})")
    return ChatDeployment.options(ray_actor_options={"num_cpus": num_cpus}).bind(str(path), name)


@dataclass
class RunningApp:
    """A started app: `url` is the OpenAI base URL (…/v1) to give a client."""

    url: str
    info: dict[str, Any]
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


def run(
    model_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    name: str | None = None,
    blocking: bool = True,
    *,
    address: str | None = None,
    num_cpus: float = DEFAULT_NUM_CPUS,
) -> RunningApp:
    """Start Serve (HTTP on `host:port`, loopback by default) with the model in `model_dir`.

    Uses the Ray instance already initialised in this process, else connects to `address`
    (None: a new local instance). With `blocking`, serves until Ctrl-C and stops the app.
    If Serve already runs on that cluster, its existing HTTP host and port stay in force.
    """
    app = build_app(model_dir, name=name, num_cpus=num_cpus)
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address=address)
    running = RunningApp(url=f"http://{host}:{port}/v1", info={}, started_ray=started_ray)
    serve.start(http_options={"host": host, "port": port})
    try:
        handle = serve.run(app, name=APP_NAME, route_prefix="/")
        running.info = handle.info.remote().result()
    except BaseException:
        running.stop()  # leave no half-deployed app behind on a shared cluster
        raise
    if blocking:
        running.wait()
    return running
