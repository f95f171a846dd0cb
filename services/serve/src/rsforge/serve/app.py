"""Ray Serve app: rsforge models behind OpenAI's `/v1/chat/completions`, a change-mask API and a web page.

The app graph: one `Ingress` deployment (`ingress.py`: FastAPI routing, validation, image decoding,
auth, metrics, the page) holds a DeploymentHandle per `ModelDeployment` (`replica.py`: batching,
generation, masks), one deployment per model directory, each with its own replicas (fixed or
autoscaled), CPU/GPU reservation and dynamic batching. Here: building that graph from a
`ServeConfig` (`build_app`) and starting / stopping it (`run`, `RunningApp`).
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import yaml
from ray import serve
from ray.serve.deployment import Application
from ray.serve.handle import DeploymentHandle

from rsforge.core.model import RECIPE_FILE
from rsforge.serve.ingress import Ingress
from rsforge.serve.replica import ModelDeployment
from rsforge.serve.settings import ServeConfig

APP_NAME = "rsforge"
MIN_MODEL_ONGOING = 64


def deployment_name(index: int) -> str:
    """The Serve deployment of the `index`-th configured model."""
    return f"model{index}"


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
            "name": deployment_name(i),
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
        "limits": vars(config.limits),
    }
    return Ingress.bind(models, settings)


@dataclass
class RunningApp:
    """A started app: `url` is the OpenAI base URL (…/v1) to give a client, `models` what each model takes."""

    url: str
    models: list[dict[str, Any]]
    started_ray: bool

    def model_handle(self, model: str) -> DeploymentHandle:
        """A handle straight to the deployment serving `model`, past the ingress (benches, tools): its
        `chat.remote(ChatRequest)` and `detect.remote(DetectRequest)` answer outcome dicts."""
        names = [m["model"] for m in self.models]
        if model not in names:
            raise KeyError(f"no served model '{model}'; this app serves {', '.join(names)}")
        return serve.get_deployment_handle(deployment_name(names.index(model)), APP_NAME)

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
