"""One live `rsforge serve` app for the tests here that go over HTTP (schemathesis, third-party clients,
the change-mask endpoint): started on first use and shared, as starting Ray and Serve costs tens of
seconds on a small machine.

It serves `pair` (the tiny change captioner: chat and a change-mask head) and `segchange` (a
text-guided mask head, no decoder), both untrained. Chat images may have at most 64 x 64 pixels and
detection scenes 200 x 200, so the tests can show that the two limits are separate.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
CORPUS = ["describe the changes between the two images", "a new building was built in the top left",
          "there is no change", "some trees were cut down"]
MAX_IMAGE_PIXELS = 64 * 64
MAX_DETECT_PIXELS = 200 * 200


class _Live:
    """The app and whether Ray was started for it (else it runs on a Ray another fixture started)."""

    app = None
    started_ray = False

    def stop(self) -> None:
        from ray import serve

        if self.app is not None:
            serve.shutdown()
            self.app = None
        if self.started_ray:
            import ray

            ray.shutdown()
            self.started_ray = False


_LIVE = _Live()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def save_model(recipe_file: str, directory: Path, **changes) -> str:
    from rsforge.core.model import RSForgeModel
    from rsforge.core.plugins import PluginManager
    from rsforge.core.recipe import parse_recipe

    plugins = PluginManager()
    raw = yaml.safe_load((ROOT / "recipes" / recipe_file).read_text())
    raw.pop("data")
    recipe = parse_recipe(raw | changes, plugins.registry).prepared(CORPUS)
    torch.manual_seed(0)
    return str(RSForgeModel.from_recipe(recipe, plugins).save_pretrained(directory))


@pytest.fixture(scope="session")
def live_app(tmp_path_factory):
    import ray

    from rsforge.serve.app import run
    from rsforge.serve.settings import ServeConfig

    if not ray.is_initialized():
        ray.init(num_cpus=4, log_to_driver=False, configure_logging=False)  # as tests/conftest.py does
        _LIVE.started_ray = True
    models = tmp_path_factory.mktemp("live-models")
    config = ServeConfig(
        models=[{"path": save_model("tiny.yaml", models / "pair"), "name": "pair"},
                {"path": save_model("segchange-tiny.yaml", models / "segchange"), "name": "segchange"}],
        port=free_port(), max_image_pixels=MAX_IMAGE_PIXELS, max_detect_pixels=MAX_DETECT_PIXELS,
    )
    _LIVE.app = run(config, blocking=False)
    yield _LIVE.app
    _LIVE.stop()


def pytest_runtest_teardown(item, nextitem):
    # A process holds one Ray instance: stop this app (and its Ray) once the tests here are done, before
    # tests elsewhere in the session (tests/conftest.py) start theirs.
    if nextitem is None or HERE not in Path(nextitem.path).parents:
        _LIVE.stop()
